"""The triton guard (``napari_xt._compat``) keeps triton out on CPU: with napari's OpenGL context on Mesa (Xvfb
here), importing torchvision through timm afterwards would otherwise segfault (triton's LLVM against Mesa's).

Each check runs in a fresh process: a segfault must fail the test, not kill the test run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

OPEN_VIEWER = """
    import sys
    import numpy as np
    import napari
    from qtpy.QtWidgets import QApplication
    viewer = napari.Viewer(show=True)
    viewer.add_image(np.zeros((64, 64)))
    QApplication.processEvents()
"""


def _run(tmp_path, body: str) -> subprocess.CompletedProcess:
    script = tmp_path / "after_viewer.py"
    script.write_text(textwrap.dedent(OPEN_VIEWER) + textwrap.dedent(body))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False)


def test_timm_imports_after_the_viewer_opened(tmp_path):
    res = _run(tmp_path, """
        from napari_xt._compat import keep_triton_out_without_cuda
        keep_triton_out_without_cuda()
        assert "torch" not in sys.modules     # the guard itself is cheap: the GUI thread may call it
        import timm                           # torchvision comes with it
        import torch
        model = timm.create_model("resnet18", pretrained=False, num_classes=2)
        blocked = sys.modules.get("triton", "absent") is None
        assert blocked == (not torch.cuda.is_available()), (blocked, torch.cuda.is_available())
        print("OK", type(model).__name__, flush=True)
        viewer.close()
    """)
    assert res.returncode == 0, f"rc {res.returncode}: {res.stderr[-2000:]}"
    assert "OK ResNet" in res.stdout


def test_the_dock_guards_its_own_process(tmp_path):
    res = _run(tmp_path, """
        viewer.window.add_plugin_dock_widget("napari-xt", "xT analysis")  # the dock's constructor calls the guard
        QApplication.processEvents()
        import timm
        import torch
        timm.create_model("resnet18", pretrained=False)
        print("OK", sys.modules.get("triton", "absent") is None or torch.cuda.is_available(), flush=True)
        viewer.close()
    """)
    assert res.returncode == 0, f"rc {res.returncode}: {res.stderr[-2000:]}"
    assert "OK True" in res.stdout
