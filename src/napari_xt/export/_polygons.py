"""One polygon per connected object of a label level, read tile by tile so memory does not grow with the image.

Each tile is traced with a one-pixel rim of its neighbours (``skimage.measure.find_contours`` on the padded class
mask, 4-connected objects), then clipped to the tile. With the rim, an object crossing a tile edge is traced exactly
as it would be without tiles, so the two clipped pieces share the same segment of that edge; a union-find joins
pieces whose edge segments overlap, and a whole object is merged (``shapely.union_all``) and handed out as soon as
the tile row below it has been traced and none of its pieces reaches further down. Only the pieces of objects that
are still open stay in memory.

Coordinates are pixel *corners* of the level (pixel (i, j) covers x in [j, j + 1], y in [i, i + 1]), the
convention QuPath and GeoJSON tools use; contours run through the middles of pixel edges, so corners are cut by
half a pixel and rasterising a polygon (pixel centres inside) gives back the pixels exactly.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from skimage.measure import find_contours

_EPS = 1e-9


def iter_objects(level, tile: int = 1024, skip: tuple[int, ...] = (0,)) -> Iterator[tuple[int, Polygon]]:
    """``(class value, polygon)`` for each 4-connected object of ``level`` (2-D, integer), top rows first.

    Values in ``skip`` (background) are not traced. A polygon is a ``Polygon`` (holes kept) or, rarely, a
    ``MultiPolygon`` when merged pieces only touch; either way one object is one geometry.
    """
    height, width = (int(n) for n in level.shape)
    joins = _Joins()
    below: dict[int, list] = {}  # tile column -> (class, piece, lo, hi) on the bottom edge of the row above
    for y0 in range(0, height, tile):
        y1 = min(y0 + tile, height)
        beside: list = []  # (class, piece, lo, hi) on the right edge of the previous tile in this row
        next_below: dict[int, list] = {}
        for col, x0 in enumerate(range(0, width, tile)):
            x1 = min(x0 + tile, width)
            ey0, ex0 = max(y0 - 1, 0), max(x0 - 1, 0)
            block = np.asarray(level[ey0:min(y1 + 1, height), ex0:min(x1 + 1, width)])
            edges: dict[str, list] = {"left": [], "top": [], "right": [], "bottom": []}
            found = tile_pieces(block, (ey0, ex0), (y0, x0, y1, x1), skip)
            # drop vertices in the middle of straight runs (~2.5x fewer, same shapes): less to hold and to merge
            lean = shapely.simplify([p for _, p in found], 0.0, preserve_topology=False)
            for (cls, _), piece in zip(found, lean, strict=True):
                pid = joins.add(cls, piece)
                for side, lo, hi in _edge_intervals(piece, (y0, x0, y1, x1), (height, width)):
                    edges[side].append((cls, pid, lo, hi))
            joins.join_overlapping(beside, edges["left"])
            joins.join_overlapping(below.get(col, []), edges["top"])
            beside = edges["right"]
            if edges["bottom"]:
                next_below[col] = edges["bottom"]
        below = next_below
        yield from joins.pop_closed({pid for items in below.values() for _, pid, _, _ in items})
    yield from joins.pop_closed(set())


def tile_pieces(block: np.ndarray, origin: tuple[int, int], box: tuple[int, int, int, int],
                skip: tuple[int, ...]) -> list[tuple[int, Polygon]]:
    """The polygons of each class inside ``box`` (level px), traced on ``block`` (the box plus its rim)."""
    return list(_tile_pieces(block, origin, box, skip))


def _tile_pieces(block, origin, box, skip) -> Iterator[tuple[int, Polygon]]:
    ey0, ex0 = origin
    y0, x0, y1, x1 = box
    core = block[y0 - ey0:y1 - ey0, x0 - ex0:x1 - ex0]
    if core.dtype.kind == "u" and core.dtype.itemsize <= 2:
        counts = np.bincount(core.ravel())
        present = np.flatnonzero(counts)
    else:
        present = np.unique(core)
    clip = shapely.box(x0, y0, x1, y1)
    for cls in present.tolist():
        if cls in skip:
            continue
        mask = block == cls
        if mask.all():  # the tile and its rim are one class: the tile itself is the piece
            yield int(cls), clip
            continue
        for poly in _trace(mask, ey0, ex0):
            yield from ((int(cls), p) for p in _clip(poly, clip, box))


def _trace(mask: np.ndarray, ey0: int, ex0: int) -> list[Polygon]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    r0, c0 = int(rows[0]), int(cols[0])
    crop = np.pad(mask[r0:int(rows[-1]) + 1, c0:int(cols[-1]) + 1], 1).astype(np.float32)
    shells: list[np.ndarray] = []
    holes: list[np.ndarray] = []
    for contour in find_contours(crop, 0.5, fully_connected="low", positive_orientation="high"):
        # padded-crop index -> level pixel-corner coordinates (x, y)
        xy = np.column_stack([contour[:, 1] + (ex0 + c0 - 0.5), contour[:, 0] + (ey0 + r0 - 0.5)])
        if len(xy) < 4:
            continue
        signed = np.dot(xy[:-1, 0], xy[1:, 1]) - np.dot(xy[1:, 0], xy[:-1, 1])
        (shells if signed < 0 else holes).append(xy)  # objects wind one way, their holes the other
    shell_polys = [Polygon(s) for s in shells]
    if not holes:
        return shell_polys
    owners: dict[int, list] = {}
    tree = shapely.STRtree(shell_polys)
    hole_polys = [Polygon(h) for h in holes]
    pairs = tree.query(hole_polys, predicate="within")
    areas = shapely.area(shell_polys)
    best: dict[int, int] = {}
    for hole, shell in zip(pairs[0].tolist(), pairs[1].tolist(), strict=True):
        if hole not in best or areas[shell] < areas[best[hole]]:  # nested objects: the innermost shell owns it
            best[hole] = shell
    for hole, shell in best.items():
        owners.setdefault(shell, []).append(holes[hole])
    return [Polygon(s.exterior, owners.get(i, [])) if i in owners else s for i, s in enumerate(shell_polys)]


def _clip(poly: Polygon, clip: Polygon, box: tuple[int, int, int, int]) -> list[Polygon]:
    y0, x0, y1, x1 = box
    bx0, by0, bx1, by1 = poly.bounds
    if bx0 >= x0 and by0 >= y0 and bx1 <= x1 and by1 <= y1:
        return [poly]
    if bx1 <= x0 or by1 <= y0 or bx0 >= x1 or by0 >= y1:
        return []  # lies in the rim: the neighbouring tile traces it
    if not poly.is_valid:
        poly = shapely.make_valid(poly)
    return polygon_parts(shapely.intersection(poly, clip))


def polygon_parts(geom) -> list[Polygon]:
    """The polygons of any geometry (an overlay can add points or lines where shapes only touch)."""
    if isinstance(geom, Polygon):
        return [] if geom.is_empty or geom.area <= 0 else [geom]
    return [p for g in getattr(geom, "geoms", []) for p in polygon_parts(g)]


def _edge_intervals(piece: Polygon, box, shape) -> Iterator[tuple[str, float, float]]:
    """Segments of ``piece``'s outline lying on the tile's inner edges (edges shared with another tile)."""
    y0, x0, y1, x1 = box
    height, width = shape
    xy = np.asarray(piece.exterior.coords)
    x, y = xy[:, 0], xy[:, 1]
    lines = (("left", 0, x0, x0 > 0), ("right", 0, x1, x1 < width), ("top", 1, y0, y0 > 0),
             ("bottom", 1, y1, y1 < height))
    for side, axis, at, inner in lines:
        if not inner:
            continue
        on = np.abs(xy[:, axis] - at) < _EPS
        seg = on[:-1] & on[1:]
        if not seg.any():
            continue
        along = y if axis == 0 else x
        a, b = along[:-1][seg], along[1:][seg]
        for lo, hi in zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist(), strict=True):
            if hi - lo > _EPS:
                yield side, lo, hi


class _Joins:
    """Pieces of objects not yet complete, grouped by a union-find over "these two pieces share an edge"."""

    def __init__(self):
        self.pieces: dict[int, tuple[int, Polygon]] = {}
        self.parent: dict[int, int] = {}
        self.members: dict[int, list[int]] = {}
        self._next = 0

    def add(self, cls: int, piece: Polygon) -> int:
        pid = self._next
        self._next += 1
        self.pieces[pid] = (cls, piece)
        self.parent[pid] = pid
        self.members[pid] = [pid]
        return pid

    def find(self, pid: int) -> int:
        root = pid
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[pid] != root:
            self.parent[pid], pid = root, self.parent[pid]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if len(self.members[ra]) < len(self.members[rb]):
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.members[ra].extend(self.members.pop(rb))

    def join_overlapping(self, before: list, after: list) -> None:
        """Join pieces of one class whose segments on a shared tile edge overlap by more than a point."""
        for cls_a, pid_a, lo_a, hi_a in before:
            for cls_b, pid_b, lo_b, hi_b in after:
                if cls_a == cls_b and min(hi_a, hi_b) - max(lo_a, lo_b) > _EPS:
                    self.union(pid_a, pid_b)

    def pop_closed(self, still_open: set[int]) -> Iterator[tuple[int, Polygon]]:
        """Merge and hand out every object none of whose pieces is in ``still_open`` (reaching the next row)."""
        open_roots = {self.find(pid) for pid in still_open}
        for root in sorted(r for r in self.members if r not in open_roots):
            ids = self.members.pop(root)
            cls = self.pieces[ids[0]][0]
            geoms = [self.pieces.pop(i)[1] for i in ids]
            for i in ids:
                del self.parent[i]
            merged = geoms[0] if len(geoms) == 1 else shapely.union_all(geoms)
            parts = polygon_parts(merged)
            if parts:
                yield cls, parts[0] if len(parts) == 1 else MultiPolygon(parts)
