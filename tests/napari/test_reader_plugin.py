"""The napari reader and sample data inside a real viewer (Xvfb via pytest-xvfb)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from napari_xt._reader import napari_get_reader


def test_reader_returns_none_for_foreign_and_broken_files(tmp_path):
    png = tmp_path / "photo.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    assert napari_get_reader(str(png)) is None
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00garbage")
    assert napari_get_reader(str(broken)) is None
    assert napari_get_reader([str(broken), str(png)]) is None


def test_viewer_opens_rgb_pyramid_with_physical_scale(make_napari_viewer, tissue_ome_tiff):
    viewer = make_napari_viewer()
    layers = viewer.open(str(tissue_ome_tiff), plugin="napari-xt")
    assert len(layers) == 1
    layer = layers[0]
    assert layer.multiscale and layer.rgb
    assert tuple(layer.scale) == pytest.approx((0.5, 0.5))
    assert layer.data[0].shape == (1536, 2048, 3)
    assert layer.metadata["napari_xt"]["kind"] == "brightfield"


def test_viewer_opens_sar_bands_with_contrast_limits(make_napari_viewer, sar_ome_tiff):
    viewer = make_napari_viewer()
    layers = viewer.open(str(sar_ome_tiff), plugin="napari-xt")
    assert len(layers) == 2  # VV and VH as separate layers
    for layer in layers:
        lo, hi = layer.contrast_limits
        assert -70 < lo < hi < 30 and hi - lo < 80  # a dB range, not the float32 dtype range
        assert not layer.rgb
        assert np.all(np.asarray(layer.scale) == 10.0)


def test_sample_data_contributions_open(make_napari_viewer):
    # one viewer each: a slide in µm and a SAR scene in m share no sensible world space
    viewer = make_napari_viewer()
    viewer.open_sample("napari-xt", "tissue")
    tissue = viewer.layers["synthetic tissue"]
    assert tissue.multiscale and tissue.rgb and tissue.data[0].shape == (16384, 16384, 3)
    assert viewer.layers["ground truth (tissue)"].data[0].shape == (16384, 16384)
    sar_viewer = make_napari_viewer()
    sar_viewer.open_sample("napari-xt", "sar")
    assert len(sar_viewer.layers["ground truth ships"].data) > 50
    assert sar_viewer.layers["synthetic SAR (VV, dB)"].multiscale


def test_napari_command_line_opens_slide(tissue_ome_tiff, tmp_path):
    """``napari slide --plugin napari-xt`` through napari's own entry point, in a real process and window."""
    script = tmp_path / "launch.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            from napari._qt.qt_event_loop import get_qapp
            from qtpy.QtCore import QTimer
            import napari

            def check():
                viewer = napari.current_viewer()
                print("LAYERS", [(l.name, l.multiscale, l.rgb) for l in viewer.layers], flush=True)
                viewer.close()
                get_qapp().quit()

            get_qapp()
            QTimer.singleShot(4000, check)
            sys.argv = ["napari", {str(tissue_ome_tiff)!r}, "--plugin", "napari-xt"]
            from napari.__main__ import main
            main()
            """
        )
    )
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180)
    assert "LAYERS [('tissue.ome.tif', True, True)]" in res.stdout, res.stdout + res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
