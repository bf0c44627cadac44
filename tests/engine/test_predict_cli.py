"""``napari-xt predict`` as a user runs it: exit codes, one-line errors, --json summary, --resume."""

import json
from dataclasses import fields

import pytest

from napari_xt.app.request import PlanOptions, RunOptions
from napari_xt.cli import build_parser, main
from napari_xt.cli._predict import build_request
from napari_xt.store import read_meta


def test_predict_json_summary(tissue_ome_tiff, model_path, tmp_path, capsys):
    out = tmp_path / "s.zarr"
    code = main(["predict", str(tissue_ome_tiff), "--model", str(model_path), "--out", str(out), "--level", "1",
                 "--device", "cpu", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["regions_done"] == summary["regions_total"] > 0
    for key in ("regions_skipped", "seconds", "regions_per_s", "peak_rss_mb", "store"):
        assert key in summary
    assert summary["peak_rss_mb"] > 50
    assert read_meta(out)["complete"] is True


def test_predict_resume_of_complete_store_does_nothing(tissue_ome_tiff, model_path, tmp_path, capsys):
    out = tmp_path / "r.zarr"
    args = ["predict", str(tissue_ome_tiff), "--model", str(model_path), "--out", str(out), "--level", "1",
            "--device", "cpu", "--json"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args + ["--resume"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["regions_new"] == 0 and summary["regions_done"] == summary["regions_total"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "no-such-model"], "no-such-model"),
        (["--model", "PRESET", "--roi", "1,2,3"], "--roi"),
        (["--model", "PRESET", "--device", "cuda:3"], "CUDA"),
        (["--model", "PRESET", "--precision", "fp16", "--device", "cpu"], "fp16"),
        (["--model", "PRESET", "--focus", "12"], "--focus"),
        (["--model", "PRESET", "--score-threshold", "1.5"], "score threshold"),
        (["--model", "PRESET", "--level", "9"], "--level"),
    ],
)
def test_predict_bad_arguments_give_one_line_errors(tissue_ome_tiff, tmp_path, capsys, extra, message):
    extra = [("tiny-xl-seg" if a == "PRESET" else a) for a in extra]
    code = main(["predict", str(tissue_ome_tiff), "--out", str(tmp_path / "x.zarr"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert message in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "x.zarr").exists()  # nothing half-made is left behind


def test_existing_store_error_names_the_flags(tissue_ome_tiff, model_path, tmp_path, capsys):
    """The engine's error is neutral; the CLI adds the flags that fix it."""
    out = tmp_path / "taken.zarr"
    args = ["predict", str(tissue_ome_tiff), "--model", str(model_path), "--out", str(out), "--level", "1",
            "--device", "cpu", "--roi", "0,0,500,500", "--json"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert "already exists" in err and "--resume" in err and "--overwrite" in err and "\n" not in err
    assert main([*args, "--overwrite"]) == 0


def test_every_plan_and_run_option_has_a_flag():
    args = build_parser().parse_args([
        "predict", "img.tif", "--model", "m", "--out", "o.zarr", "--mpp", "0.5", "--region-size", "512",
        "--overlap", "32", "--context", "global", "--window-size", "3", "--order", "serpentine",
        "--roi", "0,0,10,20", "--no-mask", "--focus", "100,200", "--device", "cpu", "--precision", "bf16",
        "--batch-size", "3", "--prefetch", "5", "--read-workers", "3", "--score-threshold", "0.6",
        "--max-detections", "7", "--probabilities", "--window-batch", "2", "--compile", "--first-region-alone",
        "--low-priority", "--resume"])
    request = build_request(args, image="img.tif", out="o.zarr")
    assert request.plan == PlanOptions(mpp=0.5, level=None, region_size=512, overlap=32, context="global",
                                       window_size=3, order="serpentine", roi=(0.0, 0.0, 10.0, 20.0), use_mask=False,
                                       focus=(100.0, 200.0))
    assert request.run == RunOptions(device="cpu", precision="bf16", batch_size=3, prefetch=5, read_workers=3,
                                     score_threshold=0.6, max_detections_per_region=7, probabilities=True,
                                     window_batch=2, compile=True, first_region_alone=True,
                                     low_priority=True)
    assert request.resume and not request.overwrite and request.model == "m"
    defaults = build_request(build_parser().parse_args(["predict", "img.tif", "--model", "m", "--out", "o.zarr"]))
    assert defaults.plan == PlanOptions() and defaults.run == RunOptions()  # flag defaults are the options' defaults
    # every field of the options was set away from its default above: none is unreachable from the CLI
    for options, default in ((request.plan, PlanOptions()), (request.run, RunOptions())):
        same = [f.name for f in fields(options) if getattr(options, f.name) == getattr(default, f.name)]
        assert same in ([], ["level"]), same  # --level excludes --mpp (tested above)
    polygon = build_request(build_parser().parse_args(
        ["predict", "i", "--model", "m", "--out", "o", "--roi", "0,0;0,10;10,0", "--level", "1"]))
    assert polygon.plan.roi == ((0.0, 0.0), (0.0, 10.0), (10.0, 0.0)) and polygon.plan.level == 1


def test_predict_unreadable_image_exit_1(tmp_path, capsys):
    bad = tmp_path / "bad.svs"
    bad.write_bytes(b"\x00" * 100)
    assert main(["predict", str(bad), "--model", "tiny-xl-seg", "--out", str(tmp_path / "o.zarr")]) == 1
    assert "bad.svs" in capsys.readouterr().err
    assert not (tmp_path / "o.zarr").exists()


def test_predict_wrong_channel_count_is_explained(sar_ome_tiff, tmp_path, capsys):
    assert main(["predict", str(sar_ome_tiff), "--model", "tiny-xl-seg", "--out", str(tmp_path / "o.zarr")]) == 1
    err = capsys.readouterr().err
    assert "channel" in err and "2" in err
    assert not (tmp_path / "o.zarr").exists()


def test_predict_missing_required_option_exit_2(tissue_ome_tiff):
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(tissue_ome_tiff)])
    assert exc.value.code == 2
