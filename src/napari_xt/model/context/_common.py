"""Small helpers shared by the streaming context encoders (Transformer-XL, Mamba, Longformer).

Kept private: 2D sinusoidal position embedding from the ``positions`` argument, argument checks, and the running-mean
summary that several encoders keep in memory as a fixed-size (sum, count) pair.
"""

from __future__ import annotations

import torch


def check_inputs(tokens: torch.Tensor, positions: torch.Tensor, in_dim: int) -> None:
    """Raise a readable error when ``tokens``/``positions`` do not follow the ContextEncoder contract."""
    if tokens.dim() != 3 or tokens.shape[-1] != in_dim:
        raise ValueError(f"tokens must be [B, L, {in_dim}], got {tuple(tokens.shape)}")
    if positions is not None:
        check_positions(positions, tokens.shape[0], tokens.shape[1])


def check_positions(positions: torch.Tensor, batch: int, length: int) -> None:
    """``positions`` is ``[L, 2]`` (shared by the batch) or ``[B, L, 2]`` (one row per window: windows stepped in
    lockstep sit at different places of their own grids, e.g. an edge window cut short)."""
    shape = tuple(positions.shape)
    if shape not in ((length, 2), (batch, length, 2)):
        raise ValueError(f"positions must be [L, 2] or [B, L, 2] with B={batch}, L={length} (row, col), got {shape}")


def add_positions(x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
    """``x`` ``[B, L, D]`` plus a position embedding ``[L, D]`` (shared) or ``[B, L, D]`` (per window)."""
    return x + (embedding[None] if embedding.dim() == 2 else embedding)


def sincos_2d(positions: torch.Tensor, dim: int, dtype: torch.dtype, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 2D sine-cosine embedding ``[..., dim]`` of integer (row, col) ``positions`` ``[..., 2]``.

    Half of the channels encode the row, half the column (each half split into sin and cos over geometric
    frequencies, as in MAE/ViT). ``dim`` must be divisible by 4. No parameters, so it adds nothing to checkpoints.
    """
    if dim % 4:
        raise ValueError(f"2D sin-cos embedding needs a dim divisible by 4, got {dim}")
    quarter = dim // 4
    omega = torch.arange(quarter, device=positions.device, dtype=torch.float32) / quarter
    omega = 1.0 / temperature**omega  # [dim/4]
    pos = positions.to(torch.float32)
    rows = pos[..., 0:1] * omega  # [..., dim/4]
    cols = pos[..., 1:2] * omega
    emb = torch.cat([rows.sin(), rows.cos(), cols.sin(), cols.cos()], dim=-1)
    return emb.to(dtype)


def sinusoid_1d(distances: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """Transformer-XL's sinusoidal embedding ``[K, dim]`` of (relative) ``distances`` ``[K]`` (sin half, cos half)."""
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, dim, 2, device=distances.device, dtype=torch.float32) / dim))
    angles = distances.to(torch.float32)[:, None] * inv_freq[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1).to(dtype)


def init_running_mean(batch: int, dim: int, device: torch.device | str | None) -> dict[str, torch.Tensor]:
    """Running (sum, count) of output tokens; the sum is kept in fp32 whatever the model dtype."""
    return {
        "sum": torch.zeros(batch, dim, device=device, dtype=torch.float32),
        "count": torch.zeros((), device=device, dtype=torch.long),
    }


def update_running_mean(
    memory: dict[str, torch.Tensor], outputs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """New (sum, count) after ``outputs`` ``[B, L, D]``: earlier chunks detached, this chunk keeps its graph."""
    total = memory["sum"].detach() + outputs.sum(dim=1).to(memory["sum"].dtype)
    count = memory["count"] + outputs.shape[1]
    return total, count


def running_mean(memory: dict[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """Mean of every output token seen so far, ``[B, D]`` in ``dtype`` (zeros before any token was seen)."""
    return (memory["sum"] / memory["count"].clamp_min(1).to(memory["sum"].dtype)).to(dtype)


def inverse_softplus(x: torch.Tensor) -> torch.Tensor:
    return x + torch.log(-torch.expm1(-x))


__all__ = [
    "add_positions",
    "check_inputs",
    "check_positions",
    "sincos_2d",
    "sinusoid_1d",
    "init_running_mean",
    "update_running_mean",
    "running_mean",
    "inverse_softplus",
]
