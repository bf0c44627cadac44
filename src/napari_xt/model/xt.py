"""``XTModel``: region encoder + context encoder + heads, with a whole-image forward and a streaming API.

Two ways in, one set of weights:

* ``model(images)`` runs whole (small) images: each image is one context window, its regions in row-major order.
  Training and reference comparisons use it.
* The engine streams huge images: ``encode_regions`` -> ``step_context`` (carrying the context encoder's fixed-size
  memory from call to call) -> ``decode`` per region, and ``classify(memory)`` once per window. ``stream_regions``
  bundles the three for a batch of consecutive regions of one window.

Both paths place tokens identically on the window's token grid (see ``tokenize.token_positions``), so a causal
context encoder gives the same outputs either way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .config import ConfigError, XTConfig
from .context.base import ContextEncoder, Memory
from .region_encoders import RegionEncoder, create_region_encoder
from .registry import get_context_encoder_builder, get_head_builder
from .tokenize import RegionGrid, cut_regions, cut_sub_regions, paste_regions, stitch_feature_maps, token_positions


@dataclass
class RegionFeatures:
    """What the region encoder made of ``N`` regions.

    ``tokens`` ``[N, h * w, D]`` (row-major over each region's token grid), ``grid`` ``(h, w)``, ``maps`` the stitched
    multi-scale maps ``[N, C_i, H_i, W_i]`` (finest first; ``maps[-1]`` is the token map) and ``region_size`` the
    regions' pixel size (segmentation logits come back at that size).
    """

    tokens: torch.Tensor
    grid: tuple[int, int]
    maps: list[torch.Tensor]
    region_size: tuple[int, int]

    def __len__(self) -> int:
        return self.tokens.shape[0]


class XTModel(nn.Module):
    """xT: nested tokenization + streaming context encoder + task heads. Build with ``build_model(config)``.

    Attribute names (``config``, ``region_encoder``, ``context_encoder``, ``heads``) are part of the checkpoint
    format and of the released-xT key mapping: do not rename them.
    """

    def __init__(self, config: XTConfig, pretrained: bool | None = None) -> None:
        super().__init__()
        config.validate()
        self.config = config
        enc_kwargs = dict(config.region_encoder_kwargs)
        want_pretrained = bool(enc_kwargs.pop("pretrained", False)) if pretrained is None else pretrained
        enc_kwargs.pop("pretrained", None)
        enc_kwargs.setdefault("img_size", config.sub_region_size)
        self.region_encoder: RegionEncoder = create_region_encoder(
            config.region_encoder, in_chans=config.in_chans, pretrained=want_pretrained, **enc_kwargs
        )
        self._check_geometry()
        builder = get_context_encoder_builder(config.context_encoder)
        self.context_encoder: ContextEncoder = builder(self.region_encoder.out_dim, **config.context_encoder_kwargs)
        heads = {}
        for name, options in config.heads.items():
            if "." in name or not name:
                raise ConfigError(f"head name {name!r} must be non-empty and contain no '.'")
            options = dict(options)
            kind = options.pop("type", name)
            heads[name] = get_head_builder(kind)(
                self.context_encoder.out_dim, encoder_channels=self.region_encoder.channels,
                encoder_reductions=self.region_encoder.reductions, **options,
            )
        self.heads = nn.ModuleDict(heads)
        #: Sub-regions encoded per region-encoder call (None: all at once); bounds peak memory, not results.
        self.sub_batch: int | None = None

    def _check_geometry(self) -> None:
        c, red = self.config, self.region_encoder.reductions
        coarsest, finest = max(red), min(red)
        if c.sub_region_size % coarsest:
            raise ConfigError(f"sub_region_size {c.sub_region_size} must be a multiple of the coarsest encoder "
                              f"stride {coarsest}")
        if c.overlap % (2 * coarsest):
            raise ConfigError(f"overlap {c.overlap} must be a multiple of {2 * coarsest} (2 x the coarsest encoder "
                              "stride) so overlap margins crop exactly at every feature scale")
        if c.region_overlap % (2 * finest):
            raise ConfigError(f"region_overlap {c.region_overlap} must be a multiple of {2 * finest} (2 x the "
                              "finest encoder stride) so region outputs crop exactly")

    # -- geometry ----------------------------------------------------------------------------------------------
    @property
    def token_stride(self) -> int:
        """Image px per token (the region encoder's coarsest reduction)."""
        return self.region_encoder.reductions[-1]

    @property
    def token_grid(self) -> tuple[int, int]:
        side = math.ceil(self.config.region_size / self.token_stride)
        return (side, side)

    @property
    def tokens_per_region(self) -> int:
        h, w = self.token_grid
        return h * w

    @property
    def window_heads(self) -> list[str]:
        return [n for n, h in self.heads.items() if getattr(h, "level", "region") == "window"]

    @property
    def region_heads(self) -> list[str]:
        return [n for n, h in self.heads.items() if getattr(h, "level", "region") != "window"]

    def _param(self) -> torch.Tensor:
        return next(self.parameters())

    # -- streaming API -----------------------------------------------------------------------------------------
    def encode_regions(self, regions: torch.Tensor) -> RegionFeatures:
        """``[N, C, R, R]`` normalised regions -> tokens + stitched multi-scale maps (sub-regions never mix here)."""
        if regions.dim() != 4 or regions.shape[1] != self.config.in_chans:
            raise ValueError(f"regions must be [N, {self.config.in_chans}, R, R], got {tuple(regions.shape)}")
        c = self.config
        # sub-region starts/cuts on the coarsest stride, so every stage's maps stitch exactly (see model/tiling.py)
        align = math.gcd(c.sub_region_size - c.overlap, max(self.region_encoder.reductions))
        tiles, layout = cut_sub_regions(regions, c.sub_region_size, c.overlap, c.pad_mode, align=align)
        if self.sub_batch and tiles.shape[0] > self.sub_batch:
            chunks = [self.region_encoder(t) for t in tiles.split(self.sub_batch)]
            feats = [torch.cat(parts) for parts in zip(*chunks)]
        else:
            feats = self.region_encoder(tiles)
        stitched = stitch_feature_maps(feats, layout)
        maps = [stitched] if isinstance(stitched, torch.Tensor) else stitched
        tokens = maps[-1].flatten(2).transpose(1, 2)
        gh, gw = maps[-1].shape[-2:]
        return RegionFeatures(tokens, (int(gh), int(gw)), maps, (int(regions.shape[-2]), int(regions.shape[-1])))

    def init_memory(self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Memory:
        p = self._param()
        return self.context_encoder.init_memory(batch, device or p.device, dtype or p.dtype)

    def step_context(self, features: RegionFeatures, memory: Memory, positions: torch.Tensor,
                     batch: int | None = None) -> tuple[torch.Tensor, Memory]:
        """Feed the regions' tokens to the context encoder; returns context tokens ``[N, L, out_dim]`` and memory.

        The ``N`` regions belong to ``batch`` windows (default ``N``: one region per window, windows stepping in
        lockstep), ordered window-major; each window's regions are consumed in order, so ``positions`` is
        ``[(N // batch) * L, 2]``, shared by all windows of the batch.
        """
        tokens = features.tokens
        n, length, dim = tokens.shape
        b = n if batch is None else int(batch)
        if b <= 0 or n % b:
            raise ValueError(f"{n} regions cannot be split into {b} windows")
        seq = tokens.reshape(b, (n // b) * length, dim)
        if tuple(positions.shape) != (seq.shape[1], 2):
            raise ValueError(f"positions must be [{seq.shape[1]}, 2], got {tuple(positions.shape)}")
        out, memory = self.context_encoder(seq, memory, positions.to(tokens.device))
        return out.reshape(n, length, out.shape[-1]), memory

    def decode(self, features: RegionFeatures, context_tokens: torch.Tensor) -> dict:
        """Region-level heads: ``{"segmentation": [N, K, R, R], "detection": {...}}`` (region-local outputs)."""
        n, _, dim = context_tokens.shape
        h, w = features.grid
        ctx_map = context_tokens.transpose(1, 2).reshape(n, dim, h, w)
        return {name: self.heads[name](features.maps, ctx_map, out_size=features.region_size)
                for name in self.region_heads}

    def classify(self, memory: Memory, token_mean: torch.Tensor | None = None, head: str | None = None) -> torch.Tensor:
        """Window logits ``[B, K]`` from the context memory (``token_mean`` needed for ``pool="tokens"`` heads)."""
        names = self.window_heads
        if not names:
            raise ValueError("this model has no classification head")
        name = head or ("classification" if "classification" in names else names[0])
        module = self.heads[name]
        if getattr(module, "pool", "memory") == "tokens":
            if token_mean is None:
                raise ValueError(f"head {name!r} pools tokens: pass token_mean (mean context token of the window)")
            return module(token_mean)
        return module(self.context_encoder.summarize(memory))

    def region_positions(self, window_positions: Sequence[tuple[int, int]], grid: tuple[int, int] | None = None,
                         device: torch.device | None = None) -> torch.Tensor:
        """Token positions ``[len(window_positions) * L, 2]`` for regions at (row, col) of their window."""
        return token_positions(grid or self.token_grid, list(window_positions), device)

    def stream_regions(self, regions: torch.Tensor, window_positions: Sequence[tuple[int, int]],
                       memory: Memory) -> tuple[dict, Memory]:
        """Consecutive regions of ONE window (memory from ``init_memory(1)``) -> (per-region outputs, memory)."""
        if len(window_positions) != regions.shape[0]:
            raise ValueError(f"{regions.shape[0]} regions but {len(window_positions)} window positions")
        feats = self.encode_regions(regions)
        positions = self.region_positions(window_positions, feats.grid, regions.device)
        ctx, memory = self.step_context(feats, memory, positions, batch=1)
        return self.decode(feats, ctx), memory

    # -- whole images ------------------------------------------------------------------------------------------
    def region_grid(self, image_shape: tuple[int, int]) -> RegionGrid:
        """The regions ``forward`` cuts an image of ``image_shape`` (H, W) px into: the streaming plan's rule.

        Starts and cuts are snapped to the finest encoder stride so stride-``f`` region outputs (detection maps)
        paste exactly onto the image grid. Where the flush region's offset (``H - region_size``) and the overlap
        midpoints already fall on that stride the grid is exactly ``make_plan``'s (same boxes, same cores); otherwise
        the last region and its cut sit at most ``f - 1`` px further on (see tests/engine/test_tiling_equivalence.py).
        """
        c = self.config
        align = math.gcd(c.region_size - c.region_overlap, min(self.region_encoder.reductions))
        return RegionGrid(image_shape, c.region_size, c.region_overlap, align)

    def forward(self, images: torch.Tensor) -> dict:
        """``[B, C, H, W]`` normalised images, each one context window -> outputs on the image grid.

        ``segmentation`` ``[B, K, H, W]``; ``detection`` maps at stride 4 ``[B, *, ceil(H/4), ceil(W/4)]``;
        ``classification`` ``[B, K]``. Regions overlapping by ``region_overlap`` each contribute the part they own.
        """
        if images.dim() != 4 or images.shape[1] != self.config.in_chans:
            raise ValueError(f"images must be [B, {self.config.in_chans}, H, W], got {tuple(images.shape)}")
        b = images.shape[0]
        grid = self.region_grid((int(images.shape[-2]), int(images.shape[-1])))
        n = len(grid)
        regions = cut_regions(images, grid, self.config.pad_mode).flatten(0, 1)
        feats = self.encode_regions(regions)
        positions = self.region_positions([grid.row_col(i) for i in range(n)], feats.grid, images.device)
        ctx, memory = self.step_context(feats, self.init_memory(b), positions, batch=b)
        outputs: dict = {}
        for name, out in self.decode(feats, ctx).items():
            if isinstance(out, dict):
                outputs[name] = {k: paste_regions(v.reshape(b, n, *v.shape[1:]), grid) for k, v in out.items()}
            else:
                outputs[name] = paste_regions(out.reshape(b, n, *out.shape[1:]), grid)
        if self.window_heads:
            token_mean = ctx.reshape(b, -1, ctx.shape[-1]).mean(1)
            for name in self.window_heads:
                outputs[name] = self.classify(memory, token_mean, head=name)
        return outputs


def build_model(config: XTConfig | dict, pretrained: bool | None = None) -> XTModel:
    """Build an ``XTModel`` from a config (or its dict). ``pretrained`` overrides ``region_encoder_kwargs``."""
    if isinstance(config, dict):
        config = XTConfig.from_dict(config)
    return XTModel(config, pretrained=pretrained)
