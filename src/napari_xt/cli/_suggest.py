"""``napari-xt suggest IMAGE --model M --top K --out regions.geojson``: where to annotate next, for scripted campaigns.

The model runs over the image (or ``--roi``) through the same streaming engine as ``predict``; every region is scored
by the model's doubt (segmentation: class-balanced mean entropy of its softmax; detection: peaks near its calibrated
threshold), and the top K cells, spread out by ``--min-distance``, are written as QuPath-style GeoJSON annotations
(level-0 pixels). ``--exclude done.geojson`` skips what an earlier round already labelled, so a campaign is
``suggest → annotate → train → suggest --exclude ...``. While a detector is taught on few regions, part of the K
(``--explore``) are picked to cover the unlabelled image instead: its doubt then lies mostly on background.
Exit codes: 0 written, 1 the input could not be processed (unreadable image, a classification-only model, ``--out``
exists), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..app.suggest import COLD_REGIONS, MEASURES, SuggestOptions
from ..errors import OutputError
from . import _models
from ._predict import parse_roi


def add_parser(sub) -> None:
    d = SuggestOptions()
    p = sub.add_parser("suggest", help="rank the regions worth annotating next by the model's uncertainty",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", metavar="IMAGE", help="slide, TIFF/OME-TIFF/GeoTIFF or OME-Zarr")
    p.add_argument("--model", required=True, help=_models.zoo_help(
        "a segmentation or detection checkpoint (.safetensors) or a model named by `napari-xt models`: {names}",
        "demo", "preset", "imported"))
    p.add_argument("--top", type=int, default=d.top, metavar="K", help=f"suggestions to write (default {d.top})")
    p.add_argument("--out", required=True, metavar="GEOJSON", help="where the suggestions go (a GeoJSON file)")
    p.add_argument("--roi", help="only this part of the image, level-0 px: 'y0,x0,y1,x1' or 'y,x;y,x;y,x;...'")
    p.add_argument("--cell", type=int, default=d.cell, metavar="N",
                   help=f"a suggestion covers N x N of the model's regions (default {d.cell})")
    p.add_argument("--min-distance", type=float, default=d.min_distance, metavar="CELLS",
                   help="two suggestions' centres are at least this many cells apart, relaxed only when the image "
                   f"has too few cells (default {d.min_distance:g}: never touching)")
    p.add_argument("--measure", choices=MEASURES, default=d.measure,
                   help="segmentation: balanced (default: mean normalised entropy of the softmax, each pixel weighted "
                   "by its predicted class's weight in the balanced loss, so doubt about a rare class counts), entropy "
                   "(unweighted) or margin (mean 1 - (p1 - p2))")
    p.add_argument("--band", type=float, default=d.band, metavar="B",
                   help="detection: a peak within B x threshold of the model's threshold is undecided "
                   f"(default {d.band:g})")
    p.add_argument("--explore", type=_explore, default=None, metavar="auto|SHARE",
                   help="share of the suggestions picked to cover the unlabelled image (the regions that best "
                   "represent it) instead of by doubt, 0..1 (default auto: 0 for segmentation; for detection "
                   f"{COLD_REGIONS}/({COLD_REGIONS}+n) with n labelled regions (--trained-regions, else the cells "
                   "--exclude covers; neither: 0, unless the model has no calibrated threshold: 1): a detector "
                   "taught on a few regions is most unsure about background texture")
    p.add_argument("--trained-regions", type=int, default=None, metavar="N",
                   help="how many regions the model was trained on (for --explore auto; default: the cells "
                   "--exclude covers)")
    p.add_argument("--exclude", metavar="GEOJSON", action="append", default=[],
                   help="polygons already annotated (e.g. an earlier --out); cells mostly inside their bounding "
                   "boxes are not suggested (repeatable)")
    p.add_argument("--coords", choices=("auto", "pixel", "map"), default="auto",
                   help="the GeoJSON's coordinates: level-0 pixels (QuPath) or WGS 84 lon/lat (a GIS; a georeferenced "
                   "image only); auto: map when the image is georeferenced (default). Each suggestion also keeps "
                   "its pixel box")
    p.add_argument("--heatmap", metavar="TIFF", help="also write every region's uncertainty as a float32 TIFF "
                   "(one pixel = heat_step level-0 px, NaN where no region ran)")
    p.add_argument("--window-size", type=int, default=None, help="regions per context window side "
                   "(default: predict's)")
    p.add_argument("--no-mask", action="store_true", help="score every region (no foreground mask)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    p.add_argument("--batch-size", type=int, default=4, help="regions encoded together (default 4)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out / --heatmap")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(run=run)


def _explore(text: str) -> float | None:
    if text == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'auto' or a share in [0, 1], not {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"the share must be in [0, 1], not {value:g}")
    return value


def exclusion_boxes(paths: list[str]) -> tuple[tuple[float, float, float, float], ...]:
    """Bounding boxes (level-0 y0, x0, y1, x1) of the polygons of GeoJSON files in pixel coordinates (x, y), or of
    the ``pixel_box`` each of ``napari-xt suggest``'s own features carries (its map-coordinate files too)."""
    boxes = []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"--exclude {path}: cannot read it as GeoJSON ({err})") from None
        features = data.get("features", []) if isinstance(data, dict) else []
        for feature in features:
            box = ((feature or {}).get("properties") or {}).get("pixel_box")
            if isinstance(box, list) and len(box) == 4:  # our own suggestions, whatever their coordinates
                x0, y0, x1, y1 = (float(v) for v in box)
                boxes.append((y0, x0, y1, x1))
                continue
            geom = (feature or {}).get("geometry") or {}
            kind, coords = str(geom.get("type")), geom.get("coordinates") or []
            rings = coords[:1] if kind == "Polygon" else ([p[0] for p in coords if p] if kind == "MultiPolygon" else [])
            for ring in rings:
                xs, ys = [float(p[0]) for p in ring], [float(p[1]) for p in ring]
                if xs:
                    boxes.append((min(ys), min(xs), max(ys), max(xs)))
    return tuple(boxes)


def _check_out(path: str | None, overwrite: bool, flag: str) -> None:
    if path and Path(path).exists() and not overwrite:
        raise OutputError(f"{flag} {path} exists", path, exists=True)


def run(args: argparse.Namespace) -> int:
    from ..app.suggest_run import suggest

    options = SuggestOptions(top=args.top, cell=args.cell, min_distance=args.min_distance, measure=args.measure,
                             band=args.band, exclude=exclusion_boxes(args.exclude), explore=args.explore,
                             trained_regions=args.trained_regions)
    options.validate()
    _check_out(args.out, args.overwrite, "--out")
    _check_out(args.heatmap, args.overwrite, "--heatmap")
    t0 = time.perf_counter()
    found = suggest(args.image, args.model, options, roi=parse_roi(args.roi), window_size=args.window_size,
                    use_mask=not args.no_mask, device=args.device, batch_size=args.batch_size)
    coords = args.coords if args.coords != "auto" else ("map" if found.georef is not None else "pixel")
    found.write_geojson(args.out, coords)
    if args.heatmap:
        import tifffile

        tifffile.imwrite(args.heatmap, found.heat, photometric="minisblack")
    seconds = round(time.perf_counter() - t0, 2)
    rows: list[dict] = [{"rank": n + 1, "box": [round(float(v), 1) for v in found.cells[i]],
                         "uncertainty": float(found.scores[i]), "reason": found.reason(n)}
                        for n, i in enumerate(found.order)]
    if args.json:
        print(json.dumps({"out": args.out, "coords": coords, "task": found.task, "measure": found.measure,
                          "threshold": found.threshold,
                          "regions": found.regions, "explore": found.info.get("explore", 0.0),
                          "suggestions": rows, "heat_step": found.heat_step,
                          "seconds": seconds}))
        return 0
    what = found.measure + (f" (threshold {found.threshold:.3f})" if found.threshold is not None else "")
    cover = sum(row["reason"] == "coverage" for row in rows)
    mix = f" ({cover} of them for coverage: the model is taught on few regions)" if cover else ""
    print(f"{found.regions} regions scored by {what} in {seconds:.1f} s; the {len(rows)} to annotate next{mix} -> "
          f"{args.out}")
    for row in rows:
        y0, x0, y1, x1 = row["box"]
        print(f"  {row['rank']:3d}. y {y0:.0f}-{y1:.0f}, x {x0:.0f}-{x1:.0f}  uncertainty {row['uncertainty']:.4f}"
              + ("  (coverage)" if row["reason"] == "coverage" else ""))
    return 0
