"""An orthomosaic's transparent or nodata border is neither a class nor background when training."""

from __future__ import annotations

import numpy as np
import pytest
from geohelpers import write_ortho

from napari_xt.engine.normalise import Normaliser
from napari_xt.io import open_image
from napari_xt.model.config import XTConfig
from napari_xt.train import IGNORE, DetectionAnnotations, SegmentationLabels, TrainingImage
from napari_xt.train.data import build_windows, iter_window

BORDER = 200


@pytest.mark.parametrize("mode", ["alpha", "nodata"])
def test_border_pixels_are_ignored_not_background(tmp_path, mode):
    path = write_ortho(tmp_path / f"{mode}.tif", h=768, w=640, border=BORDER, alpha=mode == "alpha",
                       nodata=0 if mode == "nodata" else None)
    image = open_image(path)
    h, w = image.shape[:2]
    dense = np.zeros((h, w), np.uint8)  # dense ground truth: class 0 = background everywhere (ignore=255)
    dense[300:400, 300:400] = 1
    seg = SegmentationLabels.from_array(dense, (h, w), ignore=255, class_names=["background", "field"])
    det = DetectionAnnotations([350.0], [350.0], [20.0], [20.0], [0], ["tree"])
    ws = build_windows([TrainingImage(image, segmentation=seg, detection=det)], region_size=128, window_size=2,
                       pixel_size=None, level=0, use_mask=False)
    norm = Normaliser.from_config(XTConfig(region_size=128, sub_region_size=64), image)
    border_ignored = inside_kept = cells_off = 0
    for ref in ws.windows:
        for sample in iter_window(ws, ref, norm, None, None):
            y0, x0, y1, x1 = ws.plans[0].regions[sample.region_id].box
            yy, xx = np.mgrid[y0:y1, x0:x1]
            outside = (yy < BORDER) | (yy >= h - BORDER) | (xx < BORDER) | (xx >= w - BORDER)
            in_image = (yy < h) & (xx < w)
            seg_t = sample.segmentation
            assert (seg_t[outside & in_image] == IGNORE).all()  # the border never teaches "background"
            assert (seg_t[~outside & in_image] != IGNORE).all()  # the mosaic itself still does
            border_ignored += int((outside & in_image).sum())
            inside_kept += int((~outside).sum())
            valid = sample.objects["valid"]
            cells_off += int((~valid).sum())
            assert not valid[outside[::4, ::4] & in_image[::4, ::4]].any()
    assert border_ignored > 0 and inside_kept > 0 and cells_off > 0
