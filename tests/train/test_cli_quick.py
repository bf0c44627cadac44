"""`napari-xt train` with QuPath GeoJSON polygons, a time budget and Quick mode, end to end on a small image."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_xt.cli._train import budget_and_epochs, epoch_line, parse_duration
from napari_xt.train.events import EpochDone


def test_durations_and_the_default_budget():
    assert parse_duration("300") == 300 and parse_duration("90s") == 90 and parse_duration("5m") == 300
    assert parse_duration("1.5h") == 5400
    with pytest.raises(ValueError, match="time-budget"):
        parse_duration("soon")

    class Args:
        time_budget, epochs = None, None

    assert budget_and_epochs(Args()) == (300.0, 1000)  # no flag: a few minutes
    Args.epochs = 3
    assert budget_and_epochs(Args()) == (None, 3)  # --epochs alone: exactly that, no budget
    Args.time_budget = "2m"
    assert budget_and_epochs(Args()) == (120.0, 3)


def test_epoch_line_warns_about_a_class_never_predicted():
    val = {"class_names": ["sea", "ship"], "iou": [0.999, 0.0], "class_f1": [0.999, 0.0],
           "annotated_px": [1000, 10], "never_predicted": ["ship"]}
    line = epoch_line(EpochDone(epoch=2, epochs=3, loss=0.1, val=val, best=0.5, best_epoch=1, saved=False, seconds=1.0))
    assert line.startswith("epoch 2: sea IoU 0.999 F1 0.999 | ship IoU 0.000 F1 0.000")
    assert "ship: 0 px predicted" in line


def test_train_quick_from_geojson_within_a_budget(tmp_path, capsys, monkeypatch):
    from napari_xt.cli import main

    monkeypatch.setenv("NAPARI_XT_FEATURE_CACHE", str(tmp_path / "features"))
    rng = np.random.default_rng(0)
    img = rng.integers(0, 60, (256, 256, 3), dtype=np.uint8)
    img[40:100, 40:100] = 200
    tifffile.imwrite(tmp_path / "img.tif", img, photometric="rgb")
    square = [[40, 40], [100, 40], [100, 100], [40, 100], [40, 40]]
    sea = [[0, 150], [256, 150], [256, 256], [0, 256], [0, 150]]
    feats = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [c]},
              "properties": {"classification": {"name": n}}} for c, n in ((square, "ship"), (sea, "sea"),
                                                                          (square, "whale"))]
    (tmp_path / "a.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    out = tmp_path / "m.safetensors"
    args = ["train", "--image", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "a.geojson"),
            "--class-names", "unlabelled,sea,ship", "--region-size", "64", "--quick", "--time-budget", "20s",
            "--epochs", "3", "--val-fraction", "0", "--no-mask", "--context-options", '{"hidden": 32}',
            "--out", str(out), "--json"]
    assert main(args) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert "whale x1" in captured.err  # an unknown class name is reported, not silently dropped
    assert out.is_file() and summary["class_counts"][1] > 0 and summary["class_counts"][2] == 60 * 60
    assert summary["seconds"] < 60 and 1 <= summary["epochs_run"] <= 3
    assert any((tmp_path / "features").iterdir())
