import json
import subprocess
import sys

import pytest

from napari_xt.cli import main


def test_npe2_validate_passes():
    res = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-xt"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "valid" in (res.stdout + res.stderr).lower()


def test_manifest_commands_resolve():
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-xt")
    for cmd in manifest.contributions.commands:
        assert callable(pm.commands.get(cmd.id)), cmd.id  # imports python_name: a typo fails here


def test_cli_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("info", "sample", "convert-xt", "predict"):
        assert command in out


def test_cli_info_json(tissue_ome_tiff, capsys):
    assert main(["info", str(tissue_ome_tiff), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["levels"][0]["shape"] == [1536, 2048, 3]
    assert info["pixel_size"] == pytest.approx([0.5, 0.5])
    assert info["kind"] == "brightfield"
    assert len(info["levels"]) >= 2


def test_cli_info_text(sar_ome_tiff, capsys):
    assert main(["info", str(sar_ome_tiff)]) == 0
    out = capsys.readouterr().out
    assert "level 0  1536 x 1024 x 2" in out
    assert "sar" in out


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"II*\x00\x08\x00\x00\x00"])
def test_cli_info_bad_input_is_one_line_and_exit_1(tmp_path, capsys, content):
    bad = tmp_path / "broken.svs"
    bad.write_bytes(content)
    assert main(["info", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("napari-xt info: error:")
    assert "\n" not in err and "Traceback" not in err
    assert "broken.svs" in err


def test_cli_info_missing_file_exit_code_from_console_script(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "napari_xt.cli", "info", str(tmp_path / "nope.tif")], capture_output=True, text=True
    )
    assert res.returncode == 1
    assert "nope.tif" in res.stderr


def test_cli_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sample", "nonsense", "out.tif"])
    assert exc.value.code == 2


def test_cli_sample_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "s.ome.tif"
    out.write_bytes(b"precious")
    assert main(["sample", "tissue", str(out), "--size", "512"]) == 1
    assert out.read_bytes() == b"precious"
    assert main(["sample", "tissue", str(out), "--size", "512", "--overwrite"]) == 0
    assert out.stat().st_size > 1000
    assert not list(tmp_path.glob("*.partial"))
