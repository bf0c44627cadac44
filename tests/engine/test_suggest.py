"""Suggestions measured by the streaming engine (issue 24): region scores from the run driver's own outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_xt.app.driver import predict, prepare
from napari_xt.app.request import make_request
from napari_xt.app.suggest import (
    SuggestOptions,
    balanced_uncertainty,
    class_entropy,
    segmentation_uncertainty,
)
from napari_xt.app.suggest_run import SuggestionError, suggest
from napari_xt.io import array_image
from napari_xt.model import XTConfig, build_model
from napari_xt.store import ResultStore


def _model(heads: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = XTConfig(region_encoder="tiny", region_size=128, sub_region_size=64, context_encoder="transformer_xl",
                   context_encoder_kwargs={"hidden": 32, "layers": 1, "heads": 2}, heads=heads)
    return build_model(cfg).eval()


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    pixels = (rng.random((640, 768, 3)) * 255).astype(np.uint8)
    pixels[:, :256] //= 8  # a dark band: the random model's doubt differs from region to region
    return array_image(pixels, name="suggest")


def test_region_scores_are_the_entropy_of_the_stored_probabilities(image, tmp_path):
    """Each region's score is the mean normalised entropy over its core of the probabilities a prediction of the
    same model and plan stores; the heat map holds the same values; the top picks are spread out."""
    model = _model({"segmentation": {"num_classes": 3}})
    found = suggest("array:suggest", "m", SuggestOptions(top=4, measure="entropy"), image_obj=image, model_obj=model,
                    use_mask=False, window_size=2, folder=tmp_path)
    assert found.task == "segmentation" and found.regions == 30  # 5 x 6 regions of 128 px
    out = tmp_path / "p.xt.zarr"
    request = make_request("array:suggest", "m", str(out), use_mask=False, window_size=2, probabilities=True)
    predict(request, prepared=prepare(request, model=model, image=image))
    probs = ResultStore.open(out).probabilities
    expected = np.array([[segmentation_uncertainty(np.asarray(probs[:, r * 128:(r + 1) * 128, c * 128:(c + 1) * 128]))
                          for c in range(6)] for r in range(5)])
    assert np.allclose(found.scores, expected.reshape(-1), atol=1e-6)  # cells of 1 region, row-major
    assert expected.std() > 1e-3  # the regions really differ (else the ranking below proves nothing)
    step = found.heat_step
    assert np.isclose(found.heat[int(64 / step), int(64 / step)], expected[0, 0])
    assert np.isclose(found.heat[int(600 / step), int(700 / step)], expected[4, 5])
    assert len(found) == 4
    assert found.scores[found.order[0]] == pytest.approx(np.nanmax(found.scores))
    rc = np.array([divmod(int(i), 6) for i in found.order])
    gaps = [np.hypot(*(rc[a] - rc[b])) for a in range(4) for b in range(a)]
    assert min(gaps) >= 2  # never two touching cells
    # the default measure: the same entropy, each pixel weighted by its predicted class's balanced-loss weight
    balanced = suggest("array:suggest", "m", SuggestOptions(top=4), image_obj=image, model_obj=model, use_mask=False,
                       window_size=2, folder=tmp_path)
    parts = [class_entropy(np.asarray(probs[:, r * 128:(r + 1) * 128, c * 128:(c + 1) * 128]))
             for r in range(5) for c in range(6)]
    weighted = balanced_uncertainty(np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts]))
    assert balanced.measure == "balanced" and np.allclose(balanced.scores, weighted, atol=1e-6)


def test_an_undecided_model_scores_one_and_a_sure_one_zero(image, tmp_path):
    """A head whose logits are constant gives the analytic entropy everywhere (through uint8 probability maps)."""
    model = _model({"segmentation": {"num_classes": 2}})
    head = model.heads["segmentation"].classifier
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.0, 0.0]))
    flat = suggest("array:suggest", "m", SuggestOptions(top=2), image_obj=image, model_obj=model, use_mask=False,
                   folder=tmp_path)
    assert np.allclose(flat.scores, 1.0, atol=1e-3)
    with torch.no_grad():
        head.bias.copy_(torch.tensor([2.0, 0.0]))
    p = 1 / (1 + math.exp(-2.0))
    analytic = -(p * math.log(p) + (1 - p) * math.log(1 - p)) / math.log(2)
    sure = suggest("array:suggest", "m", SuggestOptions(top=2, measure="margin"), image_obj=image, model_obj=model,
                   use_mask=False, folder=tmp_path)
    assert np.allclose(sure.scores, 1 - (2 * p - 1), atol=0.01)
    ent = suggest("array:suggest", "m", SuggestOptions(top=2), image_obj=image, model_obj=model, use_mask=False,
                  folder=tmp_path)
    assert np.allclose(ent.scores, analytic, atol=0.01) and analytic < 0.6
    assert not list(tmp_path.iterdir())  # the throw-away stores are gone


def test_roi_cells_and_exclusion(image, tmp_path):
    """Only the ROI's regions run; 2 x 2 cells; a cell already annotated is never suggested."""
    model = _model({"segmentation": {"num_classes": 3}})
    roi = (4.0, 260.0, 508.0, 764.0)  # 4 x 4 regions of 128 px (a margin: the plan rasterises the ROI coarsely)
    options = SuggestOptions(top=3, cell=2, min_distance=0, exclude=((0.0, 256.0, 256.0, 512.0),))
    found = suggest("array:suggest", "m", options, image_obj=image, model_obj=model, roi=roi, use_mask=False,
                    folder=tmp_path)
    assert found.regions == 16 and len(found.cells) == 4
    assert np.all(found.cells[:, 0] >= 0) and np.all(found.cells[:, 1] >= 256) and np.all(found.cells[:, 3] <= 768)
    assert np.all((found.cells[:, 2] - found.cells[:, 0]) == 256)
    excluded = int(np.flatnonzero((found.cells[:, 0] == 0) & (found.cells[:, 1] == 256))[0])
    assert np.isnan(found.scores[excluded]) and excluded not in found.order and len(found) == 3
    assert np.isnan(found.heat[0, 0]) and not np.isnan(found.heat[0, -1])  # left of the ROI: never ran
    geo = found.to_geojson()
    ring = geo["features"][0]["geometry"]["coordinates"][0]
    y0, x0, y1, x1 = found.boxes[0]
    assert ring[0] == [x0, y0] and ring[2] == [x1, y1] and geo["features"][0]["properties"]["rank"] == 1


def test_detection_counts_the_peaks_near_the_threshold(image, tmp_path):
    model = _model({"detection": {"num_classes": 1}})
    model.config.score_threshold = 0.4
    last = model.heads["detection"].heatmap[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(math.log(0.4 / 0.6))  # every cell scores exactly the threshold: all undecided
    near = suggest("array:suggest", "m", SuggestOptions(top=2), image_obj=image, model_obj=model, use_mask=False,
                   folder=tmp_path)
    assert near.task == "detection" and near.threshold == pytest.approx(0.4)
    assert np.all(near.scores > 0)
    with torch.no_grad():
        last.bias.fill_(math.log(0.05 / 0.95))  # far below the band: nothing undecided
    far = suggest("array:suggest", "m", SuggestOptions(top=2), image_obj=image, model_obj=model, use_mask=False,
                  folder=tmp_path)
    assert np.all(far.scores == 0)


def test_a_classification_model_is_refused(image, tmp_path):
    model = _model({"classification": {"num_classes": 2}})
    with pytest.raises(SuggestionError, match="segmentation or detection"):
        suggest("array:suggest", "m", image_obj=image, model_obj=model, folder=tmp_path)


def test_the_whole_image_when_small_else_the_view(image, tmp_path):
    """The dock's bounded default: the whole image when its plan has at most ``max_regions`` regions, else the view."""
    model = _model({"segmentation": {"num_classes": 3}})
    view = (4.0, 260.0, 508.0, 764.0)  # 4 x 4 of the image's 5 x 6 regions
    small = suggest("array:suggest", "m", SuggestOptions(top=2), image_obj=image, model_obj=model, view=view,
                    max_regions=30, use_mask=False, folder=tmp_path)
    assert small.regions == 30 and small.info["scope"] == "image"
    big = suggest("array:suggest", "m", SuggestOptions(top=2), image_obj=image, model_obj=model, view=view,
                  max_regions=29, use_mask=False, folder=tmp_path)
    assert big.regions == 16 and big.info["scope"] == "view"
    assert np.all(big.cells[:, 1] >= 256)
