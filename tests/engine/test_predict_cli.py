"""``napari-xt predict`` as a user runs it: exit codes, one-line errors, --json summary, --resume."""

import json

import pytest

from napari_xt.cli import main


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
    assert json.loads((out / "meta.json").read_text())["complete"] is True


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
    ],
)
def test_predict_bad_arguments_give_one_line_errors(tissue_ome_tiff, tmp_path, capsys, extra, message):
    extra = [("tiny-xl-seg" if a == "PRESET" else a) for a in extra]
    code = main(["predict", str(tissue_ome_tiff), "--out", str(tmp_path / "x.zarr"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert message in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "x.zarr").exists()  # nothing half-made is left behind


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
