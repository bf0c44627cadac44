"""Helpers shared by the benchmarks: run a snippet in a fresh interpreter and read its peak RSS."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def run_isolated(code: str, timeout: float = 1800) -> dict:
    """Run ``code`` in a new Python process; it must print one JSON line last. Adds ``peak_rss_mb``."""
    wrapper = textwrap.dedent(
        """
        import json, resource, sys
        _result = {}
        # Linux carries the parent's peak RSS across fork+exec into ru_maxrss: reset the kernel's per-process peak
        # (VmHWM) and read that instead, so a big parent never inflates a child's figure.
        try:
            open("/proc/self/clear_refs", "w").write("5")
        except OSError:
            pass
        """
    ) + textwrap.dedent(code) + textwrap.dedent(
        """
        _result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        try:
            _hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
            _result["peak_rss_mb"] = int(_hwm.split()[1]) / 1024
        except (OSError, IndexError, ValueError):
            pass
        print(json.dumps(_result))
        """
    )
    res = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{res.stderr[-4000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])
