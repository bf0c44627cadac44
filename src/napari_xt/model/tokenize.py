"""Nested tokenization: image -> regions -> sub-regions, and the exact way back to image pixels.

xT never feeds a whole image to a backbone. The image is cut into *regions* (what the context encoder sees one at a
time); each region is cut into *sub-regions* (what the region encoder sees); sub-region feature maps are stitched
back into one feature map per region, whose coarsest scale gives the region's tokens. Every step here keeps the
bookkeeping needed to map any output cell back to exact image pixels:

* Tiling is the same at both levels (``RegionGrid``) and is the streaming plan's: :mod:`napari_xt.tiling`
  (tiles of ``size`` px at stride ``size - overlap`` from 0, the last tile flush with the image's end, its start
  snapped up to a multiple of ``align``). Padding happens at the bottom/right only (so tile coordinates *are* image
  coordinates), and only where the image is smaller than a tile or the snapped last tile reaches past the end.
* Where two tiles overlap, each *owns* its half of the overlap (split at the middle, snapped down to ``align``).
  Stitching and cropping keep only owned pixels, so every image pixel comes from exactly one tile and results do
  not depend on tile order.
* At a feature scale with stride ``f`` the owned boxes are divided by ``f``; this is exact when tile starts and
  owned cuts are multiples of ``f`` (``align`` a multiple of ``f`` ensures it; otherwise a clear error). The
  image/region extent itself need not be divisible: the last cell covers a partial stride, so an extent of ``H`` px
  gives ``ceil(H / f)`` cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..tiling import owned_spans, tile_starts

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), half-open, px


@dataclass(frozen=True)
class RegionGrid:
    """Tiles of ``region_size`` px overlapping by ``overlap`` px that cover ``image_shape`` (H, W), row-major.

    Used for both levels: regions over an image and sub-regions over a region. ``align`` (a divisor of the stride)
    is the feature stride the tiles' outputs must paste at exactly: tile starts and owned cuts are multiples of it.
    With ``align=1`` the grid is exactly the streaming plan's.
    """

    image_shape: tuple[int, int]
    region_size: int
    overlap: int = 0
    align: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_shape", (int(self.image_shape[0]), int(self.image_shape[1])))
        if self.region_size <= 0 or not 0 <= self.overlap < self.region_size:
            raise ValueError(f"need 0 <= overlap ({self.overlap}) < size ({self.region_size})")
        if self.align <= 0 or self.stride % self.align:
            raise ValueError(f"the stride {self.stride} must be a multiple of align {self.align}")
        if min(self.image_shape) <= 0:
            raise ValueError(f"empty image shape {self.image_shape}")

    @property
    def stride(self) -> int:
        return self.region_size - self.overlap

    @property
    def y_starts(self) -> list[int]:
        return tile_starts(self.image_shape[0], self.region_size, self.stride, self.align)

    @property
    def x_starts(self) -> list[int]:
        return tile_starts(self.image_shape[1], self.region_size, self.stride, self.align)

    @property
    def rows(self) -> int:
        return len(self.y_starts)

    @property
    def cols(self) -> int:
        return len(self.x_starts)

    def __len__(self) -> int:
        return self.rows * self.cols

    @property
    def padded_shape(self) -> tuple[int, int]:
        """The extent the tiles span: the image itself unless it is smaller than a tile or ``align`` > 1."""
        return (self.y_starts[-1] + self.region_size, self.x_starts[-1] + self.region_size)

    def row_col(self, index: int) -> tuple[int, int]:
        return divmod(index, self.cols)

    @property
    def boxes(self) -> list[Box]:
        """Each tile's box in image px; may reach past the image into the padding."""
        s = self.region_size
        return [(y, x, y + s, x + s) for y in self.y_starts for x in self.x_starts]

    @property
    def owned_boxes(self) -> list[Box]:
        """The image px each tile owns (disjoint, covering the image exactly, clipped to it)."""
        h, w = self.image_shape
        ys = owned_spans(self.y_starts, self.region_size, h, self.align)
        xs = owned_spans(self.x_starts, self.region_size, w, self.align)
        return [(y0, x0, y1, x1) for (y0, y1) in ys for (x0, x1) in xs]


# -- pixels ------------------------------------------------------------------------------------------------------
def pad_to(image: torch.Tensor, shape: tuple[int, int], mode: str = "reflect", value: float = 0.0) -> torch.Tensor:
    """Pad ``[..., H, W]`` at the bottom/right to ``shape``.

    ``reflect`` repeats the reflection when the padding is larger than the image (torch refuses a single reflect
    pad >= the input size), and degenerates to edge replication for 1-px extents.
    """
    h, w = image.shape[-2:]
    th, tw = shape
    if th < h or tw < w:
        raise ValueError(f"cannot pad {(h, w)} down to {shape}")
    if mode == "constant":
        return F.pad(image, (0, tw - w, 0, th - h), value=value) if (th, tw) != (h, w) else image
    if mode != "reflect":
        raise ValueError(f"pad mode must be 'reflect' or 'constant', got {mode!r}")
    lead = image.shape[:-2]
    x = image.reshape(-1, 1, h, w) if image.dim() != 4 else image
    while x.shape[-2] < th or x.shape[-1] < tw:
        ch, cw = x.shape[-2:]
        py, px = min(th - ch, ch - 1), min(tw - cw, cw - 1)
        if (py == 0 and th > ch) or (px == 0 and tw > cw):  # 1-px extent: nothing to reflect
            x = F.pad(x, (0, tw - cw if px == 0 else 0, 0, th - ch if py == 0 else 0), mode="replicate")
            continue
        x = F.pad(x, (0, px, 0, py), mode="reflect")
    return x.reshape(*lead, th, tw) if image.dim() != 4 else x


def _unfold(x: torch.Tensor, grid: RegionGrid) -> torch.Tensor:
    """``[B, C, Hp, Wp]`` padded -> ``[B, n_tiles, C, s, s]`` row-major (one copy).

    The last row/column of tiles is flush with the end, not on the regular stride, so tiles are gathered by index
    (one advanced-indexing copy) rather than with ``Tensor.unfold``.
    """
    s = grid.region_size
    ar = torch.arange(s, device=x.device)
    iy = (torch.tensor(grid.y_starts, device=x.device)[:, None] + ar)  # [rows, s]
    ix = (torch.tensor(grid.x_starts, device=x.device)[:, None] + ar)  # [cols, s]
    tiles = x[:, :, iy[:, None, :, None], ix[None, :, None, :]]  # [B, C, rows, cols, s, s]
    b, c = x.shape[:2]
    return tiles.permute(0, 2, 3, 1, 4, 5).reshape(b, grid.rows * grid.cols, c, s, s)


def cut_regions(images: torch.Tensor, grid: RegionGrid, pad_mode: str = "reflect", value: float = 0.0) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, n_regions, C, R, R]`` (regions row-major, padded as needed)."""
    if tuple(images.shape[-2:]) != grid.image_shape:
        raise ValueError(f"image is {tuple(images.shape[-2:])} px but the grid was made for {grid.image_shape}")
    return _unfold(pad_to(images, grid.padded_shape, pad_mode, value), grid)


def cut_sub_regions(
    regions: torch.Tensor, sub_size: int, overlap: int = 0, pad_mode: str = "reflect", value: float = 0.0,
    align: int = 1,
) -> tuple[torch.Tensor, RegionGrid]:
    """``[N, C, R, R']`` -> (``[N * T, C, S, S]`` region-major then row-major, the sub-region layout over a region).

    ``align``: the coarsest feature stride the sub-region maps will be stitched at (see :class:`RegionGrid`).
    """
    layout = RegionGrid((int(regions.shape[-2]), int(regions.shape[-1])), sub_size, overlap, align)
    tiles = _unfold(pad_to(regions, layout.padded_shape, pad_mode, value), layout)
    return tiles.flatten(0, 1), layout


# -- feature maps ------------------------------------------------------------------------------------------------
def _scale(tile_px: int, cells: int) -> int:
    if tile_px % cells:
        raise ValueError(f"a {tile_px}-px tile gave {cells} feature cells: stride is not an integer")
    return tile_px // cells


def _local_cells(owned: Box, start: tuple[int, int], f: int) -> tuple[Box, Box]:
    """(cells to take from the tile, cells to write in the stitched map) for an owned px box at stride ``f``."""
    y0, x0, y1, x1 = owned
    sy, sx = start
    if (y0 - sy) % f or (x0 - sx) % f or y0 % f or x0 % f:
        raise ValueError(
            f"tile start/overlap margin at px {(y0, x0)} is not a multiple of the feature stride {f}: "
            "use overlaps that are multiples of 2 x the coarsest stride"
        )
    src = ((y0 - sy) // f, (x0 - sx) // f, -(-(y1 - sy) // f), -(-(x1 - sx) // f))
    dst = (y0 // f, x0 // f, -(-y1 // f), -(-x1 // f))
    return src, dst


def _stitch_one(maps: torch.Tensor, layout: RegionGrid) -> torch.Tensor:
    n_tiles = len(layout)
    if maps.shape[0] % n_tiles:
        raise ValueError(f"{maps.shape[0]} feature maps is not a multiple of {n_tiles} sub-regions per region")
    f = _scale(layout.region_size, maps.shape[-1])
    if _scale(layout.region_size, maps.shape[-2]) != f:
        raise ValueError("non-square feature stride")
    tiles = maps.reshape(maps.shape[0] // n_tiles, n_tiles, *maps.shape[1:])
    h, w = layout.image_shape
    out = maps.new_zeros(tiles.shape[0], maps.shape[1], -(-h // f), -(-w // f))
    for i, (box, owned) in enumerate(zip(layout.boxes, layout.owned_boxes)):
        (a0, b0, a1, b1), (c0, d0, c1, d1) = _local_cells(owned, box[:2], f)
        out[:, :, c0:c1, d0:d1] = tiles[:, i, :, a0:a1, b0:b1]
    return out


def stitch_feature_maps(
    sub_feature_maps: torch.Tensor | Sequence[torch.Tensor], layout: RegionGrid
) -> torch.Tensor | list[torch.Tensor]:
    """Inverse of ``cut_sub_regions`` for feature maps: ``[N * T, C, h, w]`` -> ``[N, C, ceil(R / f), ceil(R / f)]``.

    The stride ``f`` of each map is inferred from its size (``sub_size / h``); overlap margins are cropped at that
    scale. Accepts one map or a list (one per backbone stage) and returns the same kind.
    """
    if isinstance(sub_feature_maps, torch.Tensor):
        return _stitch_one(sub_feature_maps, layout)
    return [_stitch_one(m, layout) for m in sub_feature_maps]


def crop_to_image(output: torch.Tensor, grid: RegionGrid, region_index: int) -> tuple[torch.Tensor, Box]:
    """Keep the part of one region's output ``[..., h, w]`` that the region owns inside the image.

    Returns the cropped tensor and where it goes, as a box in cells of the output's own stride on the image
    (``f = region_size / w``; an image of ``H`` px has ``ceil(H / f)`` rows at that stride).
    """
    f = _scale(grid.region_size, output.shape[-1])
    src, dst = _local_cells(grid.owned_boxes[region_index], grid.boxes[region_index][:2], f)
    return output[..., src[0] : src[2], src[1] : src[3]], dst


def paste_regions(outputs: torch.Tensor, grid: RegionGrid) -> torch.Tensor:
    """``[B, n_regions, C, h, w]`` per-region outputs -> ``[B, C, ceil(H / f), ceil(W / f)]`` on the image."""
    f = _scale(grid.region_size, outputs.shape[-1])
    h, w = grid.image_shape
    canvas = outputs.new_zeros(outputs.shape[0], outputs.shape[2], -(-h // f), -(-w // f))
    for i in range(len(grid)):
        crop, (y0, x0, y1, x1) = crop_to_image(outputs[:, i], grid, i)
        canvas[:, :, y0:y1, x0:x1] = crop
    return canvas


# -- token positions ---------------------------------------------------------------------------------------------
def token_positions(
    token_grid: tuple[int, int], region_positions: Sequence[tuple[int, int]], device: torch.device | None = None
) -> torch.Tensor:
    """(row, col) on the window's token grid of every token of each region, ``[n_regions * h * w, 2]`` long.

    Each region occupies an ``h x w`` block of the window grid at ``(row * h, col * w)`` for its (row, col) in the
    window; tokens are row-major within a region, regions in the given order. With no region overlap this is exactly
    the image's token grid; with overlap, positions count regions as abutting tiles (the same convention is used in
    training and streaming, so the two agree).
    """
    h, w = token_grid
    rr, cc = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    local = torch.stack([rr.flatten(), cc.flatten()], dim=1)
    if not region_positions:
        return local[:0]
    offsets = torch.tensor([(r * h, c * w) for r, c in region_positions], device=device, dtype=torch.long)
    return (offsets[:, None, :] + local[None]).reshape(-1, 2)
