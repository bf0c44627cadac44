"""Every timm feature layout trains and predicts: a first map at stride 2 (ResNet, EfficientNet, MobileNet) gives
the dense heads stride 2, and targets, validation and decoding follow the head's stride instead of assuming 4."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_xt.app.driver import predict
from napari_xt.app.request import make_request
from napari_xt.engine.plan import make_plan
from napari_xt.engine.postprocess import region_outputs
from napari_xt.io import array_image
from napari_xt.model import load_model
from napari_xt.store import ResultStore
from napari_xt.train import DetectionAnnotations, SegmentationLabels, Trainer, TrainingImage, TrainOptions


def discs(seed: int, size: int = 512, n: int = 14):
    """Dark discs on a pale background, their centres and diameters, and their label mask (1 = disc, 2 = ground)."""
    rng = np.random.default_rng(seed)
    img = rng.normal(215, 6, (size, size, 3))
    labels = np.full((size, size), 2, np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    ys, xs = rng.uniform(24, size - 24, n), rng.uniform(24, size - 24, n)
    for y, x in zip(ys, xs, strict=True):
        inside = (yy - y) ** 2 + (xx - x) ** 2 < 64
        img[inside] = (80, 40, 130)
        labels[inside] = 1
    return np.clip(img, 0, 255).astype(np.uint8), ys, xs, labels


@pytest.mark.parametrize(("encoder", "options"), [("timm:resnet18", {}),
                                                  ("efficientnet-lite0", {"out_indices": [0, 1, 2, 3, 4]})])
def test_a_stride_2_first_map_trains_detection_and_segmentation_and_predicts(tmp_path, encoder, options):
    pixels, ys, xs, labels = discs(0)
    image = array_image(pixels)
    item = TrainingImage(image, detection=DetectionAnnotations(ys, xs, np.full(len(ys), 16.0), np.full(len(ys), 16.0),
                                                               0, ["disc"]),
                         segmentation=SegmentationLabels.from_array(labels, labels.shape, ignore=0,
                                                                    class_names=["none", "disc", "ground"]))
    out = tmp_path / "m.safetensors"
    opts = TrainOptions(out=str(out), region_encoder=encoder, encoder_options=options, region_size=256, epochs=1,
                        window_size=1, use_mask=False, context_kwargs={"hidden": 32}, val_fraction=0.5)
    trainer = Trainer([item], opts)
    assert trainer.det_stride == 2 and trainer.model.heads["detection"].stride == 2
    summary = trainer.fit()
    assert summary["epochs_run"] == 1 and np.isfinite(summary["final"]["f1"])
    model = load_model(out)
    assert 0.0 <= model.config.score_threshold <= 1.0  # calibrated on the validation windows, stored
    store = tmp_path / "p.xt.zarr"
    tifffile.imwrite(tmp_path / "discs.tif", pixels, photometric="rgb")
    predict(make_request(str(tmp_path / "discs.tif"), str(out), str(store), use_mask=False, score_threshold=0.0,
                         max_detections_per_region=50))
    with ResultStore.open(store) as s:
        det = s.detections()
        assert np.asarray(s.labels[0][:]).shape == labels.shape
    assert len(det["y"]) > 0
    # a stride-2 map decoded as if it were stride 4 puts every object in the image's top-left quarter of each region
    assert det["y"].max() > 256 + 128 and det["x"].max() > 256 + 128


def test_detections_are_decoded_at_the_heads_stride():
    """A peak in cell (10, 20) of a 128-cell heat map over a 256 px region is at px (20, 40), not (40, 80)."""
    image = array_image(np.zeros((256, 256, 3), np.uint8))
    plan = make_plan(image, region_size=256, use_mask=False)
    heat = torch.full((1, 1, 128, 128), -10.0)
    heat[0, 0, 10, 20] = 5.0
    outputs = {"detection": {"heatmap": heat, "size": torch.full((1, 2, 128, 128), 12.0),
                             "offset": torch.zeros(1, 2, 128, 128)}}
    det = region_outputs(outputs, [plan.regions[0]], plan, False, 0.5, 10)[0].detections
    assert (float(det["y"][0]), float(det["x"][0])) == (20.0, 40.0)
    assert float(det["h"][0]) == 12.0
