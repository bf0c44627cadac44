"""Where to annotate next: per-region uncertainty of a model, ranked so the top K are spread out (numpy only).

Labelling is the expensive part of fine-tuning. After a Train, the model's own doubt says where one more annotated
region would teach it most: for segmentation the mean normalised entropy of its per-pixel softmax, weighted as the
balanced training loss weighs the classes (or plain, or 1 - margin), for detection the peaks scoring near its
calibrated threshold (``XTConfig.score_threshold``), the objects it cannot decide on. The scores are measured
by the streaming engine (:mod:`.suggest_run`); this module holds what needs no
torch: the measures on one region's outputs, the pooling of regions into suggestion cells, the ranking with
diversity, and the result (:class:`Suggestions`), which the CLI writes as GeoJSON and the dock shows as a heat map
and a Shapes layer. Ranking by score alone picks K neighbours (uncertainty is spatially smooth: a coastline, a
blurry stain); a minimum distance between picks spreads them over the different things the model does not know.

A detector's doubt is not trusted while the detector knows little (its cold start): part of the K suggestions are then
picked for coverage (:func:`rank_coverage`: the regions that best represent the image's unlabelled part), a share that
falls as the labelled regions grow (:func:`explore_share`). Measured on the tree tile: a Quick detector taught on 4
regions spreads thousands of sub-threshold peaks over bare ground, so "undecided peaks" pointed at regions without a
single crown, and the next model, taught mostly "no tree here", found nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["COLD_REGIONS", "MEASURES", "SuggestOptions", "Suggestions", "detection_uncertainty", "explore_share",
           "rank_coverage", "rank_diverse", "segmentation_uncertainty"]

MEASURES = ("balanced", "entropy", "margin")
#: the cap of the balanced measure's class weights: the balanced loss's own (``TrainOptions.weight_cap``)
WEIGHT_CAP = 10.0
Box = tuple[float, float, float, float]  # level-0 (y0, x0, y1, x1)
#: a detector taught on this many labelled regions gets half its suggestions from its doubt, half for coverage
#: (the prior's weight in :func:`explore_share`): about where its threshold is first calibrated on more than one
#: validation region (the trainer holds out 20 %)
COLD_REGIONS = 8
#: at most this many cells enter the coverage rule's distance table (a seeded sample of a larger image)
COVERAGE_SAMPLE = 2000


@dataclass(frozen=True)
class SuggestOptions:
    """How suggestions are scored and picked (the CLI's flags and the dock's fields)."""

    top: int = 8  # suggestions returned
    cell: int = 1  # regions per suggestion side (2: a 2 x 2 block of regions, one training window of size 2)
    min_distance: float = 2.0  # between two suggestions' centres, in cells (2: never touching, not even diagonally)
    #: segmentation: "balanced" (mean normalised entropy, each pixel weighted by its predicted class's weight in the
    #: balanced loss), "entropy" (unweighted) or "margin" (mean 1 - (p1 - p2))
    measure: str = "balanced"
    band: float = 0.5  # detection: a peak within band x threshold of the threshold counts as undecided
    exclude: tuple[Box, ...] = ()  # level-0 boxes already annotated: cells mostly inside them are not suggested
    #: share of the suggestions picked for coverage (the regions that best represent the unlabelled image) instead
    #: of doubt, 0..1; None: automatic (:func:`explore_share`: detection only, falling as the labelled regions grow)
    explore: float | None = None
    #: regions the model was trained on, when the caller knows (the dock: its last Train; the benchmark); None: the
    #: cells covered by ``exclude`` when there are any, else unknown (a model from elsewhere: its doubt is trusted)
    trained_regions: int | None = None

    def validate(self) -> None:
        if self.top < 1:
            raise ValueError(f"the number of suggestions must be at least 1, not {self.top}")
        if self.cell < 1:
            raise ValueError(f"a suggestion cell is at least 1 region, not {self.cell}")
        if self.measure not in MEASURES:
            raise ValueError(f"measure must be one of {', '.join(MEASURES)}, not {self.measure!r}")
        if not 0 < self.band <= 1:
            raise ValueError(f"the detection band must be in (0, 1], not {self.band}")
        if self.min_distance < 0:
            raise ValueError(f"the minimum distance must be >= 0 cells, not {self.min_distance}")
        if self.explore is not None and not 0 <= self.explore <= 1:
            raise ValueError(f"the share of coverage suggestions must be in [0, 1], not {self.explore}")
        if self.trained_regions is not None and self.trained_regions < 0:
            raise ValueError(f"trained regions must be >= 0, not {self.trained_regions}")


# -- one region's uncertainty ------------------------------------------------------------------------------------------
def _normalised(probabilities: np.ndarray) -> np.ndarray:
    p = np.asarray(probabilities, dtype=np.float32)
    return p / np.maximum(p.sum(0, keepdims=True), 1e-6)  # uint8 rounding: renormalise


def _entropy(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(0) / math.log(p.shape[0])


def segmentation_uncertainty(probabilities: np.ndarray, measure: str = "entropy") -> float:
    """Mean uncertainty of a ``(K, h, w)`` probability map (uint8 0..255 as the store keeps it, or floats) in [0, 1].

    ``entropy``: Shannon entropy over log K (1: all classes equally likely). ``margin``: 1 - (p1 - p2), the gap
    between the two likeliest classes. Both are means over the region's pixels: what painting the region would fix.
    (``balanced`` needs the whole image's class frequencies: :func:`class_entropy` per region, then
    :func:`balanced_uncertainty`.)
    """
    if np.shape(probabilities)[0] < 2 or np.size(probabilities) == 0:
        return 0.0
    p = _normalised(probabilities)
    if measure == "margin":
        top2 = np.sort(p, axis=0)[-2:]
        return float(np.mean(1.0 - (top2[1] - top2[0])))
    return float(np.mean(_entropy(p)))


def class_entropy(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A region's normalised entropy summed per predicted class, and its pixel count per predicted class: (K,), (K,).

    What the balanced measure keeps per region while the engine streams; the weights need every region's counts."""
    k = int(np.shape(probabilities)[0])
    if k < 2 or np.size(probabilities) == 0:
        return np.zeros(max(k, 1)), np.zeros(max(k, 1))
    p = _normalised(probabilities)
    h, label = _entropy(p).ravel(), p.argmax(0).ravel()
    return np.bincount(label, weights=h, minlength=k), np.bincount(label, minlength=k).astype(np.float64)


def balanced_uncertainty(entropy_sums: np.ndarray, counts: np.ndarray, cap: float = WEIGHT_CAP) -> np.ndarray:
    """Regions' mean entropy with each pixel weighted by its predicted class's weight in the balanced loss.

    With ships on 0.1 % of a scene, the plain mean is the sea's doubt (clutter, coastlines); the few pixels where
    the model hesitates about a ship vanish in it. The balanced loss trains with each class weighted by its capped
    inverse frequency (the most frequent 1, a class r times rarer min(r, cap)); weighting the doubt the same way
    (frequencies of the predicted classes over the whole scored image) points at the regions whose labels that
    loss would weigh most."""
    sums, n = np.atleast_2d(entropy_sums), np.atleast_2d(counts)
    freq = n.sum(0) / max(float(n.sum()), 1.0)
    top = float(freq.max()) if freq.size else 1.0
    weights = np.where(freq > 0, np.minimum(top / np.maximum(freq, 1e-12), cap), 0.0)
    return (sums * weights).sum(1) / np.maximum(n.sum(1), 1.0)


def detection_uncertainty(scores: np.ndarray, threshold: float, band: float = 0.5) -> float:
    """How many of a region's peaks the model cannot decide on: each peak weighs 1 at the threshold, falling
    linearly to 0 at ``threshold * (1 +- band)`` (a soft count). Not a share of the peaks: a region with one faint
    peak would then outrank a crowded region with twenty undecided ones, and marking those teaches more."""
    s = np.asarray(scores, dtype=np.float64)
    width = max(band * threshold, 1e-6)
    return float(np.clip(1.0 - np.abs(s - threshold) / width, 0.0, 1.0).sum())


# -- ranking -------------------------------------------------------------------------------------------------------
def rank_diverse(scores: np.ndarray, centres: np.ndarray, k: int, min_distance: float) -> np.ndarray:
    """Indices of up to ``k`` candidates in the order taken, no two closer than ``min_distance`` (centres' unit).

    Greedy by score: a candidate is taken unless it lies within ``min_distance`` of one already taken. When that
    leaves fewer than ``k`` (a small image), the distance is halved and the pass repeated, so the rest are still as
    spread as the image allows (and come after the strict pass's picks). Candidates with a NaN or -inf score are
    never taken; ties keep index order.
    """
    scores = np.asarray(scores, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64).reshape(len(scores), -1)
    valid = np.flatnonzero(np.isfinite(scores))
    by_score = valid[np.argsort(-scores[valid], kind="stable")]
    chosen: list[int] = []
    distance = float(min_distance)
    while len(chosen) < k and len(chosen) < len(by_score):
        for i in by_score:
            if len(chosen) >= k:
                break
            if i in chosen:
                continue
            if not chosen or np.min(np.hypot(*(centres[chosen] - centres[i]).T)) >= distance:
                chosen.append(int(i))
        distance = distance / 2 if distance > 0.25 else 0.0
    return np.asarray(chosen, dtype=np.int64)


def explore_share(task: str, labelled: int | None, calibrated: bool, explore: float | None = None) -> float:
    """The share of the suggestions picked for coverage rather than doubt (``explore`` when the user set one).

    Segmentation: 0. Its doubt is a per-pixel mean of a normalised entropy, bounded by the region's area, and the
    balanced weights point it at the rare class (measured: ship regions 5 of 6 suggested vs 0.2 at random).
    Detection's doubt is a count of undecided peaks, which a detector that knows little inflates without bound on
    background texture (measured on the tree tile after 4 labelled regions: 13 291 peaks within the band over 63
    regions holding 395 crowns; 3 to 4 of the 6 top regions held none). So a detector's doubt is trusted as
    evidence against a prior worth :data:`COLD_REGIONS` labelled regions: ``COLD_REGIONS / (COLD_REGIONS + n)`` for
    ``n`` labelled regions (4: 0.67, 10: 0.44, 16: 0.33, 100: 0.07), and wholly coverage (1) for a detector with no
    calibrated threshold (its "undecided" band sits around a default guess) and none labelled. ``labelled`` None
    (not known: a model from elsewhere, run without ``--exclude``) with a calibrated threshold: 0, its doubt is
    trusted. (Not the validation F1: on one validation region it is noise: the tree tile's seed-4 detector scored
    0.65 there and 0.22 on the held-out crowns, over-detecting six-fold.)"""
    if explore is not None:
        return float(explore)
    if task != "detection":
        return 0.0
    if labelled is None:
        return 0.0 if calibrated else 1.0
    return COLD_REGIONS / (COLD_REGIONS + max(int(labelled), 0))


def rank_coverage(centres: np.ndarray, candidates: np.ndarray, taken: np.ndarray, k: int, min_distance: float,
                  seed: int = 0) -> np.ndarray:
    """Up to ``k`` of the ``candidates`` (indices into ``centres``) that, with the ``taken`` ones (labelled or
    already suggested), best represent all ``centres``: greedy facility location, each step the candidate that most
    lowers the summed distance from every cell to its nearest taken one (the first pick of an empty image is its
    medoid, not a corner as with farthest-point), none within ``min_distance`` of a taken one unless too few are
    left (the distance is then halved, as in :func:`rank_diverse`). More than :data:`COVERAGE_SAMPLE` cells: a seeded
    sample stands for them. Deterministic; ties keep index order."""
    centres = np.asarray(centres, dtype=np.float64).reshape(len(centres), -1)
    candidates = np.asarray(candidates, dtype=np.int64)
    taken = np.asarray(taken, dtype=np.int64)
    if k <= 0 or not len(candidates):
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    population = np.arange(len(centres))
    if len(population) > COVERAGE_SAMPLE:
        population = np.sort(rng.choice(population, COVERAGE_SAMPLE, replace=False))
    if len(candidates) > COVERAGE_SAMPLE:
        candidates = np.sort(rng.choice(candidates, COVERAGE_SAMPLE, replace=False))
    pop, cand = centres[population], centres[candidates]
    d = np.sqrt(((cand[:, None, :] - pop[None, :, :]) ** 2).sum(-1)).astype(np.float32)  # (candidates, population)
    span = float(np.ptp(centres, axis=0).sum()) + 1.0 if len(centres) else 1.0
    nearest = np.full(len(population), span, dtype=np.float32)  # distance to the nearest taken cell
    for t in taken:
        nearest = np.minimum(nearest, np.sqrt(((pop - centres[t]) ** 2).sum(-1)).astype(np.float32))
    placed = [centres[t] for t in taken]
    chosen: list[int] = []
    free = np.ones(len(candidates), dtype=bool)
    distance = float(min_distance)
    while len(chosen) < k and free.any():
        gain = np.maximum(nearest[None, :] - d, 0.0).sum(1)
        allowed = free.copy()
        if placed and distance > 0:
            gaps = np.sqrt(((cand[:, None, :] - np.asarray(placed)[None, :, :]) ** 2).sum(-1)).min(1)
            allowed &= gaps >= distance
        if not allowed.any():
            distance = distance / 2 if distance > 0.25 else 0.0
            continue
        j = int(np.flatnonzero(allowed)[np.argmax(gain[allowed])])
        chosen.append(int(candidates[j]))
        free[j] = False
        placed.append(cand[j])
        nearest = np.minimum(nearest, d[j])
    return np.asarray(chosen, dtype=np.int64)


def interleave(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Two ranked lists merged so each keeps its share all along, ``first``'s best first (3 and 1: a a b a; 2 and
    4: a b b a b b): a user who labels only the first few suggestions still gets both kinds."""
    keys = [(i / len(first), 0, int(v)) for i, v in enumerate(first)]
    keys += [((i + 0.5) / len(second), 1, int(v)) for i, v in enumerate(second)]
    return np.asarray([v for *_, v in sorted(keys)], dtype=np.int64)


# -- the result ----------------------------------------------------------------------------------------------------
@dataclass
class Suggestions:
    """Every scored cell of the image (level-0 boxes and scores), the top picks, and a heat map of the regions."""

    cells: np.ndarray  # (n, 4) level-0 (y0, x0, y1, x1) of each cell, clipped to the image
    scores: np.ndarray  # (n,) uncertainty of each cell (NaN: not scored, e.g. excluded)
    order: np.ndarray  # indices into ``cells`` of the suggestions, best first
    heat: np.ndarray  # (h, w) float32 region uncertainty, NaN where no region ran; one pixel = ``heat_step`` level-0 px
    heat_step: float
    task: str  # "segmentation" | "detection"
    measure: str  # what the scores are ("entropy", "margin", "undecided peaks")
    threshold: float | None = None  # detection: the model's score threshold the peaks were compared with
    image_shape: tuple[int, int] = (0, 0)  # level-0
    regions: int = 0  # regions the engine ran
    info: dict = field(default_factory=dict)
    #: why each suggestion (in ``order``) was picked: "doubt" or "coverage" (empty: all doubt)
    reasons: tuple[str, ...] = ()
    #: the image's CRS and level-0 transform (``io.Georef``) when it is georeferenced: GeoJSON can then be lon/lat
    georef: Any = None

    def reason(self, i: int) -> str:
        """"doubt" or "coverage": why suggestion ``i`` (0: the first) was picked."""
        return self.reasons[i] if i < len(self.reasons) else "doubt"

    @property
    def boxes(self) -> np.ndarray:
        """The suggestions' level-0 boxes, best first."""
        return self.cells[self.order]

    def __len__(self) -> int:
        return len(self.order)

    def centre(self, i: int) -> tuple[float, float]:
        """Level-0 (y, x) centre of suggestion ``i`` (0: the best)."""
        y0, x0, y1, x1 = self.boxes[i]
        return (float(y0 + y1) / 2, float(x0 + x1) / 2)

    def to_geojson(self, coords: str = "pixel") -> dict:
        """A FeatureCollection of the suggestions: QuPath annotations in level-0 px (x then y; pixel corners), or
        with ``coords="map"`` WGS 84 longitude/latitude polygons (RFC 7946; a georeferenced image only) for a GIS.
        Each feature keeps its level-0 ``pixel_box`` (x0, y0, x1, y1) either way, which ``--exclude`` reads."""
        mapper = None
        if coords == "map":
            if self.georef is None:
                raise ValueError("map coordinates need a georeferenced image (a GeoTIFF with a CRS); this one has "
                                 "none: use pixel coordinates")
            from ..export._geo import to_wgs84

            mapper = to_wgs84(self.georef)
        features = []
        for rank, i in enumerate(self.order, start=1):
            y0, x0, y1, x1 = (float(v) for v in self.cells[i])
            ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
            if mapper is not None:
                ring = mapper(np.asarray(ring, dtype=np.float64)).tolist()
            features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                             "properties": {"objectType": "annotation", "name": f"suggestion {rank}",
                                            "classification": {"name": "suggestion", "color": [255, 170, 0]},
                                            "measurements": {"rank": rank, "uncertainty": float(self.scores[i])},
                                            "rank": rank, "uncertainty": float(self.scores[i]),
                                            "reason": self.reason(rank - 1), "pixel_box": [x0, y0, x1, y1]}})
        return {"type": "FeatureCollection", "features": features,
                "properties": {"software": "napari-xt suggest", "task": self.task, "measure": self.measure,
                               "threshold": self.threshold,
                               "coordinates": ("WGS 84 longitude, latitude" if mapper is not None
                                               else "level-0 pixels (x, y)"),
                               "regions": self.regions, "explore": self.info.get("explore", 0.0)}}

    def write_geojson(self, path: str | Path, coords: str = "pixel") -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_geojson(coords), indent=1))
        return path


def pool_cells(rows: np.ndarray, cols: np.ndarray, cores: np.ndarray, values: np.ndarray, cell: int,
               mean: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Regions (grid row/col, level-0 core boxes, scores) -> cells of ``cell`` x ``cell`` regions: (cell boxes,
    scores, (row, col) of each cell). Segmentation takes the area-weighted mean (doubt per pixel to paint),
    detection the sum (undecided objects to mark)."""
    keys: dict[tuple[int, int], list[int]] = {}
    for i, (r, c) in enumerate(zip(rows, cols, strict=True)):
        keys.setdefault((int(r) // cell, int(c) // cell), []).append(i)
    boxes, scores, where = [], [], []
    for key in sorted(keys):
        ids = keys[key]
        b = cores[ids]
        boxes.append((b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()))
        area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1.0)
        v = values[ids]
        scores.append(float(np.sum(v * area) / np.sum(area)) if mean else float(np.sum(v)))
        where.append(key)
    return (np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(scores, dtype=np.float64),
            np.asarray(where, dtype=np.float64).reshape(-1, 2))


def covered(cells: np.ndarray, exclude: Sequence[Box], share: float = 0.5) -> np.ndarray:
    """Which cells have more than ``share`` of their area inside the union of the ``exclude`` boxes (rasterised
    on the cell's own 16 x 16 grid: exact enough for "already annotated", and boxes may overlap)."""
    out = np.zeros(len(cells), dtype=bool)
    if not len(exclude):
        return out
    ex = np.asarray(exclude, dtype=np.float64).reshape(-1, 4)
    t = (np.arange(16) + 0.5) / 16
    for i, (y0, x0, y1, x1) in enumerate(cells):
        ys, xs = y0 + t * (y1 - y0), x0 + t * (x1 - x0)
        inside = np.zeros((16, 16), dtype=bool)
        for ey0, ex0, ey1, ex1 in ex:
            inside |= ((ys >= ey0) & (ys < ey1))[:, None] & ((xs >= ex0) & (xs < ex1))[None, :]
        out[i] = inside.mean() > share
    return out


def heat_map(shape: tuple[int, int], cores: np.ndarray, values: np.ndarray, step: float) -> np.ndarray:
    """A float32 raster (NaN where no region ran) of each region's score over its core (level-0 boxes; one
    pixel = ``step`` level-0 px), small enough for a napari Image layer over any slide."""
    h, w = max(1, math.ceil(shape[0] / step)), max(1, math.ceil(shape[1] / step))
    heat = np.full((h, w), np.nan, dtype=np.float32)
    for (y0, x0, y1, x1), v in zip(cores, values, strict=True):
        heat[int(y0 // step):max(int(math.ceil(y1 / step)), int(y0 // step) + 1),
             int(x0 // step):max(int(math.ceil(x1 / step)), int(x0 // step) + 1)] = v
    return heat


def suggestions_from_regions(rows: np.ndarray, cols: np.ndarray, cores: np.ndarray, values: np.ndarray,
                             options: SuggestOptions, task: str, image_shape: tuple[int, int], heat_step: float,
                             threshold: float | None = None, calibrated: bool = True) -> Suggestions:
    """Per-region scores (level-0 cores) -> cells, the excluded ones dropped, ranked with diversity; a share of the
    picks (:func:`explore_share`; ``calibrated``: the detector carries its own threshold) for coverage."""
    detection = task == "detection"
    cells, scores, where = pool_cells(rows, cols, cores, values, options.cell, mean=not detection)
    done = covered(cells, options.exclude)
    scores[done] = np.nan
    labelled = options.trained_regions if options.trained_regions is not None else (
        int(done.sum()) if len(options.exclude) else None)
    share = explore_share(task, labelled, calibrated, options.explore)
    free = np.flatnonzero(~done)
    n_cover = min(math.floor(options.top * share + 0.5), len(free))
    by_doubt = rank_diverse(scores, where, options.top - n_cover, options.min_distance)
    rest = np.setdiff1d(free, by_doubt)
    by_cover = rank_coverage(where, rest, np.concatenate([np.flatnonzero(done), by_doubt]),
                             min(options.top - len(by_doubt), len(rest)), options.min_distance)
    order = interleave(by_doubt, by_cover)
    reasons = tuple("coverage" if i in set(by_cover.tolist()) else "doubt" for i in order)
    measure = "undecided peaks" if detection else options.measure
    return Suggestions(cells, scores, order, heat_map(image_shape, cores, values, heat_step), heat_step, task,
                       measure, threshold, image_shape, len(values),
                       info={"explore": round(share, 3), "labelled": labelled}, reasons=reasons)
