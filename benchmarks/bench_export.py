"""How fast and how light are the exporters on a large result store?

Run:  python benchmarks/bench_export.py [--sizes 3000 6000] [--keep DIR]

For each size N a result store of N x N analysis px (512 px chunks, written region by region like the engine) is
filled with thousands of nuclei-like discs (class 2), large smooth tissue islands with lumens (class 1, which cross
many tiles), a few rings (class 3) and 20 detections per 1k x 1k region. Each export then runs in a fresh process:
the script reports its seconds and the peak RSS *added* after the store is opened (imports and the open excluded).
A streaming exporter's added memory stays flat as N grows; the whole level-0 label map alone would be N² bytes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import run_isolated

REGION = 1024

EXPORT = """
import os, time, resource
import psutil
from napari_xt import export
from napari_xt.store import ResultStore
store = ResultStore.open({store!r})
_ = store.labels[0][0:512, 0:512]  # first read: codecs loaded, as in any real run
base = psutil.Process().memory_info().rss / 2**20
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the peak-RSS mark (VmHWM) to now: only what the export adds counts
t0 = time.perf_counter()
counts = {{}}
fmt = {fmt!r}
if fmt == "geojson":
    export.export_geojson(store, {out!r}, counts=counts)
elif fmt == "ome-zarr":
    export.export_ome_zarr_labels(store, {out!r})
elif fmt == "csv":
    export.export_detections_csv(store, {out!r}, counts=counts)
elif fmt == "areas":
    export.export_class_areas_csv(store, {out!r}, counts=counts)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024
_result.update(seconds=time.perf_counter() - t0, base_rss_mb=base, export_peak_rss_mb=hwm, counts=counts,
               out_mb=sum(f.stat().st_size for f in __import__("pathlib").Path({out!r}).rglob("*") if f.is_file())
               / 2**20 if os.path.isdir({out!r}) else os.path.getsize({out!r}) / 2**20)
"""


def make_store(path: Path, size: int, seed: int = 0):
    """A finished store with many objects; built one 1k region at a time (never the whole map in memory)."""
    from scipy import ndimage

    from napari_xt.store import ResultStore, StoreSpec

    rng = np.random.default_rng(seed)
    grid = -(-size // REGION)
    spec = StoreSpec(shape=(size, size), num_classes=4, class_names=["background", "tissue", "nucleus", "gland"],
                     region_count=grid * grid, chunk=512)
    store = ResultStore.create(path, spec, {"image_shape": [size, size, 3], "image_pixel_size": 0.5})
    coarse = rng.random((grid * 4 + 4, grid * 4 + 4))  # one knot per 256 px: a smooth tissue field
    n_nuclei = 0
    for rid in range(grid * grid):
        y0, x0 = (rid // grid) * REGION, (rid % grid) * REGION
        y1, x1 = min(y0 + REGION, size), min(x0 + REGION, size)
        yy, xx = np.mgrid[y0:y1, x0:x1] / (REGION / 4)
        field = ndimage.map_coordinates(coarse, [yy, xx], order=3)
        lab = np.where(field > 0.5, 1, 0).astype(np.uint8)
        lab[(field > 0.5) & (field < 0.53)] = 0  # lumens: holes in the tissue
        yy, xx = np.ogrid[: y1 - y0, : x1 - x0]
        for _ in range(int(rng.integers(150, 250))):
            cy, cx, r = rng.integers(0, y1 - y0), rng.integers(0, x1 - x0), rng.integers(4, 12)
            lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 2
            n_nuclei += 1
        cy, cx = (y1 - y0) // 2, (x1 - x0) // 2
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        lab[(d2 <= 60**2) & (d2 > 35**2)] = 3
        n = 20
        dets = {"y": (y0 + rng.random(n) * (y1 - y0)).astype(np.float32),
                "x": (x0 + rng.random(n) * (x1 - x0)).astype(np.float32),
                "h": np.full(n, 12, np.float32), "w": np.full(n, 12, np.float32),
                "cls": rng.integers(0, 2, n).astype(np.int32), "score": rng.random(n).astype(np.float32)}
        store.write_region(rid, (y0, x0, y1, x1), lab, detections=dets)
    store.finish({})
    return store, n_nuclei


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[3000, 6000])
    ap.add_argument("--formats", nargs="+", default=["geojson", "ome-zarr", "csv", "areas"])
    ap.add_argument("--keep", type=Path, help="folder to keep the stores and outputs in")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_export_"))
    work.mkdir(parents=True, exist_ok=True)
    for size in args.sizes:
        t0 = time.perf_counter()
        store, n_nuclei = make_store(work / f"store{size}.zarr", size)
        print(f"store {size} x {size}: {n_nuclei} nuclei, {store.spec.region_count} regions, "
              f"built in {time.perf_counter() - t0:.1f} s (the label map alone: {size * size / 2**20:.0f} MB)")
        for fmt in args.formats:
            out = work / f"out{size}.{ {'ome-zarr': 'ome.zarr', 'areas': 'areas.csv'}.get(fmt, fmt)}"
            r = run_isolated(EXPORT.format(store=str(store.path), fmt=fmt, out=str(out)))
            added = r["export_peak_rss_mb"] - r["base_rss_mb"]  # ru_maxrss would include this parent's peak
            counts = ", ".join(f"{v} {k}" for k, v in r["counts"].items())
            print(f"  {fmt:9s} {r['seconds']:7.1f} s   peak RSS +{added:6.0f} MB   output {r['out_mb']:7.1f} MB"
                  + (f"   ({counts})" if counts else ""))


if __name__ == "__main__":
    main()
