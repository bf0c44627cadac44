"""``napari-xt predict`` in its batch form, as a user runs it, and the forms it refuses."""

import json

import pytest

from napari_xt.cli import build_parser, main
from napari_xt.cli._batch import single_image
from napari_xt.store import read_meta


@pytest.fixture(scope="module")
def two_slides(tmp_path_factory):
    from napari_xt.synthetic import TissueSample
    from napari_xt.synthetic.export import write_ome_tiff

    folder = tmp_path_factory.mktemp("cli_batch")
    (folder / "slides").mkdir()
    for i in range(2):
        write_ome_tiff(TissueSample(512, 512, seed=10 + i), folder / "slides" / f"s{i}.ome.tif")
    return folder


def test_batch_from_a_list_file_on_a_local_cluster(two_slides, model_path, tmp_path, capsys):
    listing = two_slides / "todo.txt"
    listing.write_text("# two slides\nslides/s0.ome.tif\n\nslides/s1.ome.tif\nslides/s0.ome.tif\n", encoding="utf-8")
    out = tmp_path / "results"
    code = main(["predict", f"@{listing}", "--model", str(model_path), "--out-dir", str(out), "--device", "cpu",
                 "--scheduler", "local", "--workers", "2", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1  # --json: no dashboard line, no progress, just the summary
    summary = json.loads(lines[0])
    assert summary["images"] == 2 and summary["done"] == 2 and summary["failed"] == 0 and summary["workers"] == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(r["store"] for r in manifest) == [str(out / "s0.xt.zarr"), str(out / "s1.xt.zarr")]
    assert all(read_meta(out / f"s{i}.xt.zarr")["complete"] for i in range(2))


def test_out_with_several_images_is_a_usage_error(two_slides, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(two_slides / "slides/s0.ome.tif"), str(two_slides / "slides/s1.ome.tif"),
              "--model", "tiny-xl-seg", "--out", str(tmp_path / "x.zarr")])
    assert exc.value.code == 2
    assert "--out-dir" in capsys.readouterr().err
    assert not (tmp_path / "x.zarr").exists()


@pytest.mark.parametrize("extra, message", [
    (["--out", "a.zarr", "--out-dir", "d"], "exclude each other"),
    ([], "--out STORE"),
])
def test_other_usage_errors(two_slides, capsys, extra, message):
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(two_slides / "slides/s0.ome.tif"), "--model", "tiny-xl-seg", *extra])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_a_glob_matching_one_image_keeps_the_single_store_form(two_slides, capsys):
    parser = build_parser()
    args = parser.parse_args(["predict", str(two_slides / "slides/s1*"), "--model", "m", "--out", "o.zarr"])
    assert single_image(args) == str(two_slides / "slides/s1.ome.tif")
    args = parser.parse_args(["predict", str(two_slides / "slides/s*"), "--model", "m", "--out", "o.zarr"])
    with pytest.raises(SystemExit):
        single_image(args)
    assert "gives 2 images" in capsys.readouterr().err
    args = parser.parse_args(["predict", str(two_slides / "slides/s0.ome.tif"), "--model", "m", "--out-dir", "d"])
    assert single_image(args) is None  # --out-dir makes even one image a batch
