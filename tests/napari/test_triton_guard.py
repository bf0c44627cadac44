"""The dock's model paths keep triton out on CPU: with napari's OpenGL context on Mesa (Xvfb here), importing
torchvision through timm afterwards would otherwise segfault (triton's LLVM against Mesa's)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_timm_imports_after_the_viewer_opened(tmp_path):
    script = tmp_path / "after_viewer.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        import napari
        from qtpy.QtWidgets import QApplication
        viewer = napari.Viewer(show=True)
        viewer.add_image(np.zeros((64, 64)))
        QApplication.processEvents()
        from napari_xt.engine import catalog
        cat = catalog.load_catalog()          # what the dock does first, in a worker
        import timm                           # torchvision comes with it
        info = catalog.describe("swinv2_tiny-hyper-seg")
        print("OK", info.region_encoder, len(cat.region_encoders) > 3, flush=True)
        viewer.close()
    """))
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, f"rc {res.returncode}: {res.stderr[-2000:]}"
    assert "OK swinv2_tiny True" in res.stdout
