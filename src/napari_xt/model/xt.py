"""``XTModel``: region encoder + context encoder + heads, with a whole-image forward and a streaming API.

Two ways in, one set of weights:

* ``model(images)`` runs whole (small) images: each image is one context window, its regions in row-major order.
  Training and reference comparisons use it.
* The engine streams huge images: ``encode_regions`` -> ``step_context`` (carrying the context encoder's fixed-size
  memory from call to call) -> ``decode`` per region, and ``classify(memory)`` once per window. ``stream_regions``
  bundles the three for a batch of consecutive regions of one window, or of several windows in lockstep (one memory
  row per window: the GPU batch is then not limited to one window's regions).

``encode_regions`` is ``features_from_backbone(encode_backbone(x))``: the backbone's per-sub-region output first (at
most ``sub_batch`` sub-regions per call, which bounds a ViT-L/H's memory), then the encoder's neck (a ViT's feature
pyramid) and the stitching. Quick training caches the first half, so a trainable neck keeps training over it.

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
from .encoders import RegionEncoder, create_region_encoder
from .registry import get_context_encoder_builder, get_head_builder
from .tokenize import RegionGrid, cut_regions, cut_sub_regions, paste_regions, stitch_feature_maps, token_positions

#: CPU inference encodes about this many sub-region px per backbone call unless ``sub_batch`` says otherwise
#: (four 256 px sub-regions): big enough for efficient matrix products, small enough that activations stay reusable.
CPU_PIXELS_PER_CALL = 4 * 256 * 256


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


@dataclass
class BackboneFeatures:
    """The region encoder's backbone output for ``N`` regions, before its neck and before stitching.

    ``maps`` are per sub-region (``[N * T, C_i, h_i, w_i]``, region-major then row-major, ``T`` sub-regions per
    region), ``region_size`` the regions' pixel size. ``XTModel.features_from_backbone`` turns them into
    :class:`RegionFeatures`; Quick mode caches these (the frozen part) so a trainable neck keeps training.
    """

    maps: list[torch.Tensor]
    region_size: tuple[int, int]


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
        sub_batch = enc_kwargs.pop("sub_batch", None)  # napari-xt's own option: memory, never the features
        if sub_batch is not None and (not isinstance(sub_batch, int) or isinstance(sub_batch, bool) or sub_batch < 1):
            raise ConfigError(f"region encoder option sub_batch must be a positive int, got {sub_batch!r}")
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
        self.sub_batch: int | None = sub_batch

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
    def _align(self) -> int:
        """Sub-region starts/cuts sit on the coarsest stride, so every stage's maps stitch exactly (``tiling.py``)."""
        c = self.config
        return math.gcd(c.sub_region_size - c.overlap, max(self.region_encoder.reductions))

    def sub_region_layout(self, region_size: tuple[int, int]) -> RegionGrid:
        """The sub-regions a region of ``region_size`` px is cut into (what ``encode_regions`` stitches back)."""
        c = self.config
        return RegionGrid(tuple(region_size), c.sub_region_size, c.overlap, self._align())  # type: ignore[arg-type]

    def _sub_regions_per_call(self, tiles: torch.Tensor) -> int | None:
        """Sub-regions per backbone call: ``sub_batch`` when set; else, for CPU inference, as many as make about
        :data:`CPU_PIXELS_PER_CALL` px: activations small enough that the engine's ``reuse_freed_memory`` can keep
        them in the heap (glibc maps anything over 64 MB on a worker thread directly, whatever its settings); with
        both, Swin-V2-T 512/256 went from ~1.0 to ~2.0 regions/s on 2 cores (docs/engine.md).
        Training keeps whole batches: a BatchNorm encoder's statistics would otherwise change."""
        if self.sub_batch:
            return self.sub_batch
        if tiles.device.type != "cpu" or self.training:
            return None
        return max(1, CPU_PIXELS_PER_CALL // (self.config.sub_region_size**2))

    def encode_backbone(self, regions: torch.Tensor) -> BackboneFeatures:
        """``[N, C, R, R]`` normalised regions -> the backbone's per-sub-region output (no neck, not stitched),
        at most ``sub_batch`` sub-regions per backbone call (peak memory of a ViT-L/H, not results)."""
        if regions.dim() != 4 or regions.shape[1] != self.config.in_chans:
            raise ValueError(f"regions must be [N, {self.config.in_chans}, R, R], got {tuple(regions.shape)}")
        c = self.config
        tiles, _ = cut_sub_regions(regions, c.sub_region_size, c.overlap, c.pad_mode, align=self._align())
        encoder = self.region_encoder
        # no neck: the module's own call (its forward hooks fire, as before this split); a neck runs later
        run = encoder.forward_backbone if encoder.has_neck else encoder
        limit = self._sub_regions_per_call(tiles)
        if limit and tiles.shape[0] > limit:
            chunks = [run(t) for t in tiles.split(limit)]
            feats = [torch.cat(parts) for parts in zip(*chunks, strict=True)]
        else:
            feats = list(run(tiles))
        return BackboneFeatures(feats, (int(regions.shape[-2]), int(regions.shape[-1])))

    def features_from_backbone(self, raw: BackboneFeatures) -> RegionFeatures:
        """The region encoder's neck (a ViT's pyramid; identity otherwise) over ``raw``, stitched per region."""
        layout = self.sub_region_layout(raw.region_size)
        encoder = self.region_encoder
        if not encoder.has_neck:
            feats = list(raw.maps)
        elif (limit := self._sub_regions_per_call(raw.maps[0])) and raw.maps[0].shape[0] > limit:
            parts = [encoder.forward_neck(list(maps)) for maps in zip(*(m.split(limit) for m in raw.maps),
                                                                      strict=True)]
            feats = [torch.cat(level) for level in zip(*parts, strict=True)]
        else:
            feats = encoder.forward_neck(list(raw.maps))
        stitched = stitch_feature_maps(feats, layout)
        maps = [stitched] if isinstance(stitched, torch.Tensor) else stitched
        tokens = maps[-1].flatten(2).transpose(1, 2)
        gh, gw = maps[-1].shape[-2:]
        return RegionFeatures(tokens, (int(gh), int(gw)), maps, raw.region_size)

    def encode_regions(self, regions: torch.Tensor) -> RegionFeatures:
        """``[N, C, R, R]`` normalised regions -> tokens + stitched multi-scale maps (sub-regions never mix here)."""
        return self.features_from_backbone(self.encode_backbone(regions))

    def init_memory(self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Memory:
        p = self._param()
        return self.context_encoder.init_memory(batch, device or p.device, dtype or p.dtype)

    def step_context(self, features: RegionFeatures, memory: Memory, positions: torch.Tensor,
                     batch: int | None = None) -> tuple[torch.Tensor, Memory]:
        """Feed the regions' tokens to the context encoder; returns context tokens ``[N, L, out_dim]`` and memory.

        The ``N`` regions belong to ``batch`` windows (default ``N``: one region per window, windows stepping in
        lockstep), ordered window-major; each window's regions are consumed in order, so ``positions`` is
        ``[(N // batch) * L, 2]`` shared by all windows of the batch, or ``[batch, (N // batch) * L, 2]`` (each
        window's own).
        """
        tokens = features.tokens
        n, length, dim = tokens.shape
        b = n if batch is None else int(batch)
        if b <= 0 or n % b:
            raise ValueError(f"{n} regions cannot be split into {b} windows")
        seq = tokens.reshape(b, (n // b) * length, dim)
        if tuple(positions.shape) not in ((seq.shape[1], 2), (b, seq.shape[1], 2)):
            raise ValueError(f"positions must be [{seq.shape[1]}, 2] or [{b}, {seq.shape[1]}, 2], got "
                             f"{tuple(positions.shape)}")
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
                       memory: Memory, windows: int = 1) -> tuple[dict, Memory]:
        """The next regions of ``windows`` windows stepped in lockstep -> (per-region outputs, memory).

        ``regions`` ``[windows * k, C, R, R]`` window-major (``k`` consecutive regions of each window), their
        (row, col) in ``window_positions`` in the same order; ``memory`` has one row per window
        (``init_memory(windows)``, rows kept by :meth:`select_memory` when windows leave). Each window's outputs are
        those of streaming it alone (the rows never mix; tests/engine/test_window_batch.py).
        """
        n = regions.shape[0]
        if len(window_positions) != n:
            raise ValueError(f"{n} regions but {len(window_positions)} window positions")
        if windows < 1 or n % windows:
            raise ValueError(f"{n} regions cannot be split into {windows} windows")
        feats = self.encode_regions(regions)
        positions = self.region_positions(window_positions, feats.grid, regions.device)
        if windows > 1:
            positions = positions.reshape(windows, -1, 2)
        ctx, memory = self.step_context(feats, memory, positions, batch=windows)
        return self.decode(feats, ctx), memory

    def select_memory(self, memory: Memory, index: torch.Tensor | list[int]) -> Memory:
        """The memory rows (windows) ``index`` of a lockstep memory (see ``ContextEncoder.select_memory``)."""
        return self.context_encoder.select_memory(memory, index)

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
