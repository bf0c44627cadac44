"""Heads: output shapes, attribute names the importer relies on, detection decoding and de-duplication."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_xt.model  # noqa: F401
from napari_xt.model.heads import (
    ClassificationHead,
    DetectionHead,
    SegmentationHead,
    decode_detections,
    deduplicate_across_borders,
)
from napari_xt.model.registry import get_head_builder, list_heads

CH, RED = [8, 16, 24, 32], [4, 8, 16, 32]


def maps(n, size):
    return [torch.randn(n, c, -(-size[0] // r), -(-size[1] // r)) for c, r in zip(CH, RED)]


def test_registered():
    assert {"classification", "segmentation", "detection"} <= set(list_heads())


def test_classification_names_and_shapes():
    head = get_head_builder("classification")(40, CH, RED, num_classes=5)
    assert isinstance(head, ClassificationHead) and head.level == "window"
    assert isinstance(head.norm, torch.nn.LayerNorm) and isinstance(head.fc, torch.nn.Linear)
    assert set(head.state_dict()) == {"norm.weight", "norm.bias", "fc.weight", "fc.bias"}
    assert head(torch.randn(3, 40)).shape == (3, 5)
    with pytest.raises(ValueError):
        ClassificationHead(4, 2, pool="max")


@pytest.mark.parametrize("size", [(128, 128), (100, 76)])
def test_segmentation_full_resolution(size):
    head = get_head_builder("segmentation")(40, CH, RED, num_classes=3)
    assert isinstance(head, SegmentationHead)
    ctx = torch.randn(2, 40, -(-size[0] // 32), -(-size[1] // 32))
    out = head(maps(2, size), ctx, out_size=size)
    assert out.shape == (2, 3, *size)
    out.sum().backward()
    assert head.fpn.context_proj.weight.grad is not None


def test_detection_shapes_and_prior():
    head = get_head_builder("detection")(40, CH, RED, num_classes=2)
    assert isinstance(head, DetectionHead) and head.stride == 4
    out = head(maps(1, (128, 96)), torch.randn(1, 40, 4, 3))
    assert out["heatmap"].shape == (1, 2, 32, 24) and out["size"].shape == out["offset"].shape == (1, 2, 32, 24)
    assert float(out["heatmap"].detach().sigmoid().mean()) < 0.3  # CenterNet prior: an untrained head is quiet


def synthetic_outputs():
    heat = torch.full((2, 2, 16, 16), -10.0)
    size = torch.zeros(2, 2, 16, 16)
    offset = torch.zeros(2, 2, 16, 16)
    heat[1, 0, 3, 5] = 3.0  # region 1, class 0, cell (3, 5)
    size[1, :, 3, 5] = torch.tensor([12.0, 20.0])
    offset[1, :, 3, 5] = torch.tensor([0.5, 0.25])
    heat[1, 1, 10, 2] = 0.0  # score 0.5
    heat[1, 1, 10, 3] = -0.5  # neighbour of a stronger peak: suppressed
    return {"heatmap": heat, "size": size, "offset": offset}


def test_decode_detections_region_local():
    dets = decode_detections(synthetic_outputs(), 1, score_threshold=0.3, max_detections=10)
    assert set(dets) >= {"y", "x", "h", "w", "cls", "class", "score"}
    assert len(dets["score"]) == 2
    assert dets["y"][0] == pytest.approx((3 + 0.5) * 4) and dets["x"][0] == pytest.approx((5 + 0.25) * 4)
    assert (dets["h"][0], dets["w"][0]) == (12.0, 20.0) and dets["cls"].tolist() == [0, 1]
    assert dets["score"][0] == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())
    assert len(decode_detections(synthetic_outputs(), 1, score_threshold=0.6)["score"]) == 1
    assert len(decode_detections(synthetic_outputs(), 1, max_per_region=1, score_threshold=0.1)["score"]) == 1
    assert len(decode_detections(synthetic_outputs(), 0)["score"]) == 0


def test_decode_detections_with_region_box():
    out = {k: v[1] for k, v in synthetic_outputs().items()}  # a single region, no batch dim
    dets = decode_detections(out, (1000, 2000, 1064, 2064), score_threshold=0.3, max_per_region=5)
    assert dets["y"][0] == pytest.approx(1014.0) and dets["x"][0] == pytest.approx(2021.0)


def test_deduplicate_across_borders():
    dets = {
        "y": np.array([10.0, 12.0, 10.0, 50.0], np.float32),
        "x": np.array([10.0, 11.0, 10.0, 50.0], np.float32),
        "h": np.ones(4, np.float32), "w": np.ones(4, np.float32),
        "cls": np.array([0, 0, 1, 0]),
        "score": np.array([0.5, 0.9, 0.4, 0.3], np.float32),
    }
    out = deduplicate_across_borders(dets, radius=5)
    assert out["score"].tolist() == pytest.approx([0.9, 0.4, 0.3])  # the 0.5 duplicate of the same class goes
    assert out["cls"].tolist() == [0, 1, 0] and out["class"] is out["cls"]
    assert len(deduplicate_across_borders(dets, radius=0)["score"]) == 4
