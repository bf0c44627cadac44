"""Ranking suggestions with diversity (issue 24), torch-free: the top K are spread over the image, not K neighbours."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from napari_xt.app.suggest import (
    COLD_REGIONS,
    SuggestOptions,
    balanced_uncertainty,
    class_entropy,
    covered,
    detection_uncertainty,
    explore_share,
    interleave,
    pool_cells,
    rank_coverage,
    rank_diverse,
    segmentation_uncertainty,
    suggestions_from_regions,
)


def _grid(h: int, w: int) -> np.ndarray:
    return np.array([(r, c) for r in range(h) for c in range(w)], dtype=float)


def test_a_smooth_blob_of_doubt_gives_spread_picks_not_neighbours():
    """Uncertainty is spatially smooth: the 4 best cells by score alone are one blob; with a minimum distance of 2
    the picks are the blob's peak and then the best cells elsewhere, the second blob included."""
    centres = _grid(10, 10)
    scores = np.exp(-((centres[:, 0] - 2) ** 2 + (centres[:, 1] - 2) ** 2) / 3)
    scores += 0.6 * np.exp(-((centres[:, 0] - 8) ** 2 + (centres[:, 1] - 7) ** 2) / 2)
    naive = np.argsort(-scores, kind="stable")[:4]
    naive_gaps = [np.hypot(*(centres[a] - centres[b])) for a in naive for b in naive if a != b]
    assert min(naive_gaps) == 1  # the plain top 4 touch each other
    picks = rank_diverse(scores, centres, 4, min_distance=2.0)
    assert len(picks) == 4 and picks[0] == int(np.argmax(scores))
    gaps = [np.hypot(*(centres[a] - centres[b])) for a in picks for b in picks if a != b]
    assert min(gaps) >= 2
    assert picks[1] == 8 * 10 + 7  # the second, weaker blob comes next, before the first blob's rim
    assert list(scores[picks]) == sorted(scores[picks], reverse=True)  # best first


def test_the_distance_relaxes_when_the_image_is_small_and_bad_scores_are_never_picked():
    centres = _grid(2, 2)
    scores = np.array([0.9, 0.8, np.nan, 0.1])
    picks = rank_diverse(scores, centres, 4, min_distance=5.0)
    # all the finite ones though no two are 5 apart; the far corner (1.41 away) before the neighbour (1 away)
    assert list(picks) == [0, 3, 1]
    assert list(rank_diverse(scores, centres, 1, min_distance=5.0)) == [0]
    assert len(rank_diverse(np.full(3, np.nan), _grid(1, 3), 2, 1.0)) == 0


def test_measures():
    k = 4
    uniform = np.full((k, 8, 8), 255 // k, np.uint8)
    assert abs(segmentation_uncertainty(uniform) - 1.0) < 1e-3
    sure = np.zeros((k, 8, 8), np.uint8)
    sure[2] = 255
    assert segmentation_uncertainty(sure) == 0.0 and segmentation_uncertainty(sure, "margin") == 0.0
    half = np.zeros((2, 4, 4), np.float32)
    half[:, :2] = 0.5  # half the pixels undecided, half sure
    half[0, 2:] = 1.0
    assert abs(segmentation_uncertainty(half, "margin") - 0.5) < 1e-6
    # peaks at the threshold weigh 1, at the band's edge 0; a crowd of undecided peaks beats one
    assert abs(detection_uncertainty(np.array([0.4, 0.6, 0.2, 0.9]), 0.4, band=0.5) - 1.0) < 1e-9
    assert detection_uncertainty(np.array([0.3] * 5), 0.4, 0.5) > detection_uncertainty(np.array([0.4]), 0.4, 0.5)


def test_the_balanced_measure_weighs_doubt_about_the_rare_class_as_the_loss_does():
    """Two regions with the same total doubt: in one it is on sea pixels, in the other on the few ship pixels. The
    plain mean entropy ties them; the balanced one (weights of the predicted classes, capped at 10) prefers the
    ship's region, and equals the plain mean where one class is predicted everywhere."""
    sea = np.zeros((2, 10, 10), np.float32)
    sea[0], sea[1] = 0.9, 0.1  # sea everywhere, a little doubt
    ships = np.zeros_like(sea)
    ships[0] = 1.0  # sure sea, but for
    ships[:, 0, :9] = [[0.45], [0.55]]  # 9 px: ship, undecided
    h_sea, h_ship = segmentation_uncertainty(sea), segmentation_uncertainty(ships)
    sums, counts = zip(*(class_entropy(p) for p in (sea, ships)), strict=True)
    assert counts[1].tolist() == [91, 9]
    balanced = balanced_uncertainty(np.stack(sums), np.stack(counts))
    # ships are 9 of 200 predicted pixels: weight min(191 / 9, 10) = 10
    assert np.isclose(balanced[0], h_sea) and np.isclose(balanced[1], 10 * h_ship, rtol=1e-4)
    assert balanced[1] > balanced[0] and h_ship < h_sea
    one = balanced_uncertainty(sums[0][None], counts[0][None])
    assert np.isclose(one[0], h_sea)


def test_cells_pool_regions_and_skip_what_is_annotated():
    rows, cols = np.repeat(np.arange(4), 4), np.tile(np.arange(4), 4)
    cores = np.array([[r * 100, c * 100, r * 100 + 100, c * 100 + 100] for r, c in zip(rows, cols)], float)
    values = np.zeros(16)
    values[5] = 1.0  # one doubtful region at (1, 1)
    boxes, scores, where = pool_cells(rows, cols, cores, values, 2, mean=True)
    assert boxes.tolist()[0] == [0, 0, 200, 200] and scores[0] == 0.25 and where.tolist()[0] == [0, 0]
    _, sums, _ = pool_cells(rows, cols, cores, values, 2, mean=False)
    assert sums[0] == 1.0
    assert covered(boxes, [(0, 0, 150, 200)]).tolist() == [True, False, False, False]  # 75 % inside
    assert covered(boxes, [(0, 0, 80, 200)]).tolist() == [False] * 4  # 40 %: still suggested
    found = suggestions_from_regions(rows, cols, cores, values, SuggestOptions(top=2, cell=2,
                                     exclude=((0, 0, 200, 200),)), "segmentation", (400, 400), heat_step=50)
    assert 0 not in found.order and len(found) == 2
    assert found.heat.shape == (8, 8) and found.heat[2, 2] == 1.0 and found.heat[0, 0] == 0.0


def test_a_detector_taught_on_few_regions_gets_a_share_of_coverage_picks():
    """Cold start: a detector's doubt is evidence against a prior of COLD_REGIONS labelled regions; segmentation's
    doubt is trusted; a model from elsewhere (nothing known about its training) with a calibrated threshold too."""
    assert explore_share("segmentation", 4, True) == 0.0
    assert explore_share("detection", 4, True) == COLD_REGIONS / (COLD_REGIONS + 4)
    shares = [explore_share("detection", n, True) for n in (0, 4, 10, 16, 100)]
    assert shares[0] == 1.0 and shares == sorted(shares, reverse=True) and shares[-1] < 0.1
    assert explore_share("detection", None, True) == 0.0  # unknown training, calibrated: trust it
    assert explore_share("detection", None, False) == 1.0  # no calibrated threshold: its band is a guess
    assert explore_share("detection", 50, True, explore=0.25) == 0.25  # the user's share wins
    assert explore_share("segmentation", 0, True, explore=1.0) == 1.0


def test_coverage_picks_represent_the_image_and_avoid_what_is_taken():
    centres = _grid(9, 9)
    everything = np.arange(81)
    first = rank_coverage(centres, everything, np.zeros(0, np.int64), 1, 2.0)
    assert centres[first[0]].tolist() == [4, 4]  # the medoid, not a corner (farthest-point's first pick)
    four = rank_coverage(centres, everything, np.zeros(0, np.int64), 4, 2.0)

    def cost(picks):  # mean distance from a cell to its nearest pick
        return np.mean(np.min(np.hypot(*(centres[:, None, :] - centres[None, picks, :]).transpose(2, 0, 1)), 1))

    corners = [0, 8, 72, 80]  # farthest-point sampling's picks
    rng = np.random.default_rng(0)
    assert len(four) == 4 and cost(four) < cost(corners)
    assert cost(four) < np.mean([cost(rng.choice(81, 4, replace=False)) for _ in range(50)])  # below random's
    # the left half labelled: the picks go right, never next to a taken cell
    taken = np.flatnonzero(centres[:, 1] < 4)
    free = np.flatnonzero(centres[:, 1] >= 4)
    picks = rank_coverage(centres, free, taken, 3, 2.0)
    assert np.all(centres[picks, 1] >= 5)
    gaps = [np.hypot(*(centres[a] - centres[b])) for a in picks for b in [*picks, *taken] if a != b]
    assert min(gaps) >= 2
    assert list(rank_coverage(centres, free, taken, 3, 2.0)) == list(picks)  # deterministic
    assert len(rank_coverage(_grid(1, 2), np.array([1]), np.array([0]), 3, 5.0)) == 1  # relaxed, then all there is
    big = _grid(60, 60)  # more cells than the distance table holds: a seeded sample stands for them
    assert len(set(rank_coverage(big, np.arange(3600), np.zeros(0, np.int64), 5, 2.0).tolist())) == 5


def test_interleave_keeps_both_shares_all_along():
    assert interleave(np.array([1, 2, 3]), np.array([9])).tolist() == [1, 2, 9, 3]
    assert interleave(np.array([1, 2]), np.array([8, 9])).tolist() == [1, 8, 2, 9]
    assert interleave(np.array([1, 2]), np.array([6, 7, 8, 9])).tolist() == [1, 6, 7, 2, 8, 9]  # 1 leads
    assert interleave(np.array([1]), np.zeros(0, np.int64)).tolist() == [1]


def test_cold_detector_suggestions_mix_doubt_and_coverage():
    """A detector taught on 4 regions whose doubt piles up in one corner (background texture): of 6 suggestions,
    round(6 x 8/12) = 4 cover the image, 2 follow the doubt; with 40 labelled regions 1 of 6; segmentation none."""
    rows, cols = np.repeat(np.arange(8), 8), np.tile(np.arange(8), 8)
    cores = np.array([[r * 10, c * 10, r * 10 + 10, c * 10 + 10] for r, c in zip(rows, cols)], float)
    values = np.where((rows >= 5) & (cols >= 5), 100.0, 1.0) + 0.01 * np.arange(64)  # doubt in the corner
    labelled = tuple((r * 10.0, c * 10.0, r * 10.0 + 10, c * 10.0 + 10) for r, c in ((0, 0), (0, 7), (7, 0), (3, 3)))
    found = suggestions_from_regions(rows, cols, cores, values, SuggestOptions(top=6, exclude=labelled),
                                     "detection", (80, 80), heat_step=5, threshold=0.3)
    assert len(found) == 6 and found.info["labelled"] == 4 and found.info["explore"] == round(8 / 12, 3)
    assert found.reasons.count("coverage") == 4 and found.reason(0) == "doubt"
    doubt = [found.order[n] for n in range(6) if found.reason(n) == "doubt"]
    cover = [found.order[n] for n in range(6) if found.reason(n) == "coverage"]
    assert all(rows[i] >= 5 and cols[i] >= 5 for i in doubt)
    assert sum(rows[i] < 5 or cols[i] < 5 for i in cover) >= 3  # most outside the corner of doubt
    geo = found.to_geojson()
    assert [f["properties"]["reason"] for f in geo["features"]] == list(found.reasons)
    late = suggestions_from_regions(rows, cols, cores, values, SuggestOptions(top=6, exclude=labelled,
                                    trained_regions=40), "detection", (80, 80), heat_step=5, threshold=0.3)
    assert late.reasons.count("coverage") == 1  # round(6 x 8/48)
    seg = suggestions_from_regions(rows, cols, cores, values, SuggestOptions(top=6, exclude=labelled),
                                   "segmentation", (80, 80), heat_step=5)
    assert "coverage" not in seg.reasons and len(seg) == 6
    off = suggestions_from_regions(rows, cols, cores, values, SuggestOptions(top=6, exclude=labelled, explore=0.0),
                                   "detection", (80, 80), heat_step=5, threshold=0.3)
    assert "coverage" not in off.reasons  # --explore 0: the plain doubt ranking


def test_the_ranking_imports_no_torch():
    code = "import sys, napari_xt.app.suggest, napari_xt.app.suggest_run; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
