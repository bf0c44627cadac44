"""``napari-xt suggest`` (issue 24): GeoJSON out, spread-out picks, --exclude for the next round, exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch

from napari_xt.cli import main
from napari_xt.model import XTConfig, build_model, save_model


def _save(path, heads):
    torch.manual_seed(0)
    cfg = XTConfig(region_encoder="tiny", region_size=256, sub_region_size=128, context_encoder="transformer_xl",
                   context_encoder_kwargs={"hidden": 32, "layers": 1, "heads": 2}, heads=heads)
    save_model(build_model(cfg), path)
    return path


@pytest.fixture(scope="module")
def seg_model(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("m") / "seg.safetensors", {"segmentation": {"num_classes": 3}})


def _boxes(path):
    features = json.loads(path.read_text())["features"]
    out = []
    for f in features:
        ring = np.asarray(f["geometry"]["coordinates"][0])
        out.append((ring[:, 1].min(), ring[:, 0].min(), ring[:, 1].max(), ring[:, 0].max()))
    return np.asarray(out), features


def test_suggest_writes_the_top_regions_spread_out_then_excludes_them(tissue_ome_tiff, seg_model, tmp_path, capsys):
    out = tmp_path / "next.geojson"
    heat = tmp_path / "heat.tif"
    code = main(["suggest", str(tissue_ome_tiff), "--model", str(seg_model), "--top", "5", "--out", str(out),
                 "--no-mask", "--heatmap", str(heat), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "segmentation" and report["regions"] == 48  # 1536 x 2048 in regions of 256 px
    boxes, features = _boxes(out)
    assert len(features) == 5 and [f["properties"]["rank"] for f in features] == [1, 2, 3, 4, 5]
    assert all(f["properties"]["objectType"] == "annotation" for f in features)
    assert np.all(boxes[:, 2] - boxes[:, 0] == 256) and np.all(boxes[:, 3] <= 2048)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2 / 256
    gaps = [np.hypot(*(centres[a] - centres[b])) for a in range(5) for b in range(a)]
    assert min(gaps) >= 2  # no two suggestions touch
    scores = [f["properties"]["uncertainty"] for f in features]
    assert scores[0] == max(r["uncertainty"] for r in report["suggestions"])
    heat_map = tifffile.imread(heat)
    assert heat_map.dtype == np.float32 and np.isfinite(heat_map).all()
    assert np.isclose(np.nanmax(heat_map), scores[0])

    again = tmp_path / "round2.geojson"
    assert main(["suggest", str(tissue_ome_tiff), "--model", str(seg_model), "--top", "5", "--out", str(again),
                 "--no-mask", "--exclude", str(out)]) == 0
    text = capsys.readouterr().out
    assert "the 5 to annotate next" in text and "uncertainty" in text
    second, _ = _boxes(again)
    assert not {tuple(b) for b in second} & {tuple(b) for b in boxes}  # nothing suggested twice


def test_exit_codes(tissue_ome_tiff, seg_model, tmp_path, capsys):
    out = tmp_path / "taken.geojson"
    out.write_text("{}")
    assert main(["suggest", str(tissue_ome_tiff), "--model", str(seg_model), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "exists" in err and "--overwrite" in err and "Traceback" not in err
    assert main(["suggest", str(tissue_ome_tiff), "--model", str(seg_model), "--out", str(tmp_path / "a.geojson"),
                 "--top", "0"]) == 1
    assert "at least 1" in capsys.readouterr().err
    cls = _save(tmp_path / "cls.safetensors", {"classification": {"num_classes": 2}})
    assert main(["suggest", str(tissue_ome_tiff), "--model", str(cls), "--out", str(tmp_path / "b.geojson")]) == 1
    assert "segmentation or detection" in capsys.readouterr().err
    assert main(["suggest", str(tmp_path / "missing.tif"), "--model", str(seg_model),
                 "--out", str(tmp_path / "c.geojson")]) == 1
    assert not (tmp_path / "c.geojson").exists()
    with pytest.raises(SystemExit) as usage:
        main(["suggest", str(tissue_ome_tiff), "--out", str(tmp_path / "d.geojson")])  # no --model
    assert usage.value.code == 2
    with pytest.raises(SystemExit) as helped:
        main(["suggest", "--help"])
    assert helped.value.code == 0
    assert "Exit codes" in capsys.readouterr().out


def test_explore_picks_a_share_for_coverage_and_rejects_bad_shares(tissue_ome_tiff, tmp_path, capsys):
    """A detector taught on 4 regions (--trained-regions): round(6 x 8/12) = 4 of 6 suggestions for coverage;
    --explore 0 the plain doubt ranking; a share outside [0, 1] is a usage error."""
    det = _save(tmp_path / "det.safetensors", {"detection": {"num_classes": 1}})
    out = tmp_path / "cold.geojson"
    assert main(["suggest", str(tissue_ome_tiff), "--model", str(det), "--top", "6", "--out", str(out), "--no-mask",
                 "--trained-regions", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "detection" and report["explore"] == pytest.approx(8 / 12, abs=1e-3)
    reasons = [r["reason"] for r in report["suggestions"]]
    assert reasons.count("coverage") == 4 and reasons[0] == "doubt"
    _, features = _boxes(out)
    assert [f["properties"]["reason"] for f in features] == reasons
    assert main(["suggest", str(tissue_ome_tiff), "--model", str(det), "--top", "6", "--out", str(out), "--no-mask",
                 "--trained-regions", "4", "--explore", "0", "--overwrite"]) == 0
    text = capsys.readouterr().out
    assert "for coverage" not in text and "(coverage)" not in text
    with pytest.raises(SystemExit) as bad:
        main(["suggest", str(tissue_ome_tiff), "--model", str(det), "--out", str(out), "--explore", "1.5"])
    assert bad.value.code == 2 and "[0, 1]" in capsys.readouterr().err
