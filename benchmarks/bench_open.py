"""How fast and light is ``open_image`` on a 100,000 x 100,000 RGB pyramid, and which backend reads faster?

Run:  python benchmarks/bench_open.py [--size 100000] [--keep DIR]

The slide is written once into a temp dir from one pre-compressed JPEG tile repeated (tifffile accepts an iterator
of encoded tiles), so it takes seconds and little disk. Each measurement runs in a fresh subprocess so imports
and caches of one do not flatter another. Goals: open < 0.5 s and < 200 MB RSS added.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GOAL_S, GOAL_MB = 0.5, 200.0
TILE = 512


def write_pyramid(path: Path, size: int, textured: bool = False) -> None:
    import imagecodecs
    import tifffile

    tile = np.empty((TILE, TILE, 3), np.uint8)  # one flat colour: JPEG stores it in ~2 KB, so the file stays small
    tile[:] = (200, 150, 190)
    if textured:  # busy tile (~25 KB of JPEG) so decode cost is like real tissue: used for the speed comparison
        yy, xx = np.mgrid[0:TILE, 0:TILE]
        tile = np.stack([(xx // 2) % 256, (yy // 2) % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)
    encoded = imagecodecs.jpeg8_encode(tile, level=90, colorspace="rgb", outcolorspace="rgb")
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        side, first = size, True
        while True:
            n = (-(-side // TILE)) ** 2
            tif.write(
                (encoded for _ in range(n)), shape=(side, side, 3), dtype=np.uint8, tile=(TILE, TILE),
                compression="jpeg", photometric="rgb", subfiletype=0 if first else 1,
                resolution=(1e4 / 0.25, 1e4 / 0.25) if first else None, resolutionunit="CENTIMETER",
            )
            first = False
            if side <= 1024:
                break
            side //= 2


_CHILD = r"""
import json, sys, time, os, psutil
proc = psutil.Process()
t0 = time.perf_counter()
import numpy, dask.array, zarr, tifffile, openslide  # imports are not the open's cost: load them first
from napari_xt.io import open_image
t_import = time.perf_counter() - t0
rss0 = proc.memory_info().rss
t0 = time.perf_counter()
img = open_image(sys.argv[1], backend=sys.argv[2] if sys.argv[2] != "auto" else None)
t_open = time.perf_counter() - t0
rss1 = proc.memory_info().rss
tasks = sum(len(lv.__dask_graph__()) for lv in img.levels)
# read speed of one 1024 x 1024 region at level 0, away from the edge (first read and a warm repeat)
t0 = time.perf_counter(); a = img.read_region(0, 40960, 40960, 1024, 1024); t_first = time.perf_counter() - t0
times = []
for i in range(5):
    t0 = time.perf_counter(); img.read_region(0, 20480 + i * 2048, 30720, 1024, 1024)
    times.append(time.perf_counter() - t0)
t0 = time.perf_counter(); img.contrast_limits(); low = img.levels[-1].compute(); t_low = time.perf_counter() - t0
print(json.dumps(dict(backend=img.format, levels=img.n_levels, shape=list(img.shape), open_s=t_open,
                      rss_added_mb=(rss1 - rss0) / 2**20, import_s=t_import, graph_tasks=tasks,
                      region_first_s=t_first, region_median_s=sorted(times)[2], lowest_level_s=t_low,
                      pixel_mean=float(a.mean()))))
img.close()
"""

_DELAYED = r"""
import json, sys, time
import dask, dask.array as da, numpy as np
from napari_xt.io import open_image
img = open_image(sys.argv[1], backend="openslide")
src = img._sources[int(sys.argv[2])]
H, W, C = src.shape
th, tw = src.tile
t0 = time.perf_counter()
rows = []
for y in range(0, H, th):
    row = []
    for x in range(0, W, tw):
        h, w = min(th, H - y), min(tw, W - x)
        row.append(da.from_delayed(dask.delayed(src.read)(y, y + h, x, x + w), (h, w, C), np.uint8))
    rows.append(da.concatenate(row, axis=1))
arr = da.concatenate(rows, axis=0)
t_build = time.perf_counter() - t0
t0 = time.perf_counter(); arr[8192:10240, 8192:10240].compute(); t_tiles = time.perf_counter() - t0
t0 = time.perf_counter()
img.levels[int(sys.argv[2])][8192:10240, 8192:10240].compute()
t_chunks = time.perf_counter() - t0
print(json.dumps(dict(level=int(sys.argv[2]), level_shape=[H, W], tiles=len(rows) * len(row), delayed_build_s=t_build,
                      delayed_2048_region_s=t_tiles, chunked_2048_region_s=t_chunks)))
"""


def _child(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--keep", type=Path, help="write the slide here (reused when it exists)")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory() if args.keep is None else None
    folder = args.keep or Path(tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"pyramid_{args.size}.tif"
    if not path.exists():
        t0 = time.perf_counter()
        write_pyramid(path, args.size)
        print(f"wrote {path} ({path.stat().st_size / 2**20:.0f} MB) in {time.perf_counter() - t0:.1f} s")
    results = {}
    for backend in ("auto", "tifffile", "openslide"):
        r = results[backend] = _child(_CHILD, str(path), backend)
        print(f"[{backend:9s} -> {r['backend']}] open {r['open_s']:.3f} s ({r['open_s'] / GOAL_S:.2f} x goal "
              f"{GOAL_S} s), RSS added {r['rss_added_mb']:.1f} MB ({r['rss_added_mb'] / GOAL_MB:.2f} x goal "
              f"{GOAL_MB:.0f} MB), {r['levels']} levels, {r['graph_tasks']} dask tasks; 1024^2 region "
              f"first {r['region_first_s'] * 1e3:.0f} ms, median {r['region_median_s'] * 1e3:.0f} ms; "
              f"contrast + lowest level {r['lowest_level_s']:.3f} s")
    speed = folder / "textured_16384.tif"
    if not speed.exists():
        write_pyramid(speed, 16384, textured=True)
    for backend in ("tifffile", "openslide"):
        r = _child(_CHILD.replace("40960", "8192").replace("20480", "2048").replace("30720", "4096"), str(speed),
                   backend)
        print(f"[16384^2 textured JPEG, {backend:9s}] 1024^2 region at level 0: first "
              f"{r['region_first_s'] * 1e3:.0f} ms, median of 5 {r['region_median_s'] * 1e3:.1f} ms")
    d = _child(_DELAYED, str(path), "2")
    print(f"openslide level 2 ({d['level_shape'][0]}^2, {d['tiles']} tiles): one delayed task per tile builds in "
          f"{d['delayed_build_s']:.2f} s, reads a 2048^2 region in {d['delayed_2048_region_s'] * 1e3:.0f} ms; "
          f"multi-tile chunks read it in {d['chunked_2048_region_s'] * 1e3:.0f} ms (built at open: see above)")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
