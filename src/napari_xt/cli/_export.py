"""``napari-xt export STORE --format F --out PATH``: a result store as OME-Zarr labels, GeoJSON, CSV or JSON."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

FORMATS = {
    "ome-zarr": "OME-Zarr label pyramid (NGFF 0.5); with --into, labels/<name> of an existing OME-Zarr image",
    "geojson": "GeoJSON: one polygon per object per class, detections as points or boxes; level-0 px for QuPath, "
               "WGS 84 lon/lat (RFC 7946) for a georeferenced image (--coords)",
    "geotiff": "label map as a Cloud-Optimized GeoTIFF in the image's CRS (overviews, colour table, class names)",
    "gpkg": "GeoPackage in the image's CRS: layers 'detections' and 'segmentation' (class, score, area fields)",
    "csv": "detections table: centre x, y, width, height (level-0 px), class, score, region",
    "areas": "per-class pixel counts and areas (level-0 px², physical when the pixel size is known)",
    "json": "image-level and per-window classification scores with class names",
}


def add_parser(sub) -> None:
    formats = "\n".join(f"  {name:9s} {what}" for name, what in FORMATS.items())
    p = sub.add_parser(
        "export", help="export a result store as OME-Zarr labels, GeoJSON (QuPath), CSV or JSON",
        description=f"Export a napari-xt result store. Formats:\n{formats}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("store", help="result store folder written by `napari-xt predict` or the dock")
    p.add_argument("--format", required=True, choices=list(FORMATS), help="what to write (see above)")
    p.add_argument("--out", help="output path (not needed for --format ome-zarr with --into)")
    p.add_argument("--level", type=int, default=0, help="geojson/gpkg: label pyramid level traced (default 0)")
    p.add_argument("--simplify", type=float, default=1.0,
                   help="geojson: polygon simplification tolerance in level-0 px (0 keeps every corner; default 1)")
    p.add_argument("--detections-as", choices=["auto", "points", "boxes"], default="auto",
                   help="geojson/gpkg: detections as points or box polygons; auto (default): boxes when the model "
                        "measured object sizes (trained on boxes), else points")
    p.add_argument("--coords", choices=["auto", "pixel", "map"], default="auto",
                   help="geojson: map (WGS 84 lon/lat) or pixel coordinates; auto (default): map when the image "
                        "was georeferenced")
    p.add_argument("--no-segmentation", action="store_true", help="geojson: leave out the label polygons")
    p.add_argument("--no-detections", action="store_true", help="geojson: leave out the detections")
    p.add_argument("--into", metavar="IMAGE.ome.zarr", help="ome-zarr: write into this image's labels/<name>")
    p.add_argument("--name", default="xt", help="ome-zarr: name of the label image (default xt)")
    p.add_argument("--partial", action="store_true",
                   help="export an unfinished run, or what is intact of a damaged one (the output says it is partial)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import StoreDamaged
    from ._errors import describe

    with warnings.catch_warnings(record=True) as caught:  # a partial CSV export warns: one plain line, not a trace
        warnings.simplefilter("always", UserWarning)
        try:
            code = _export(args)
        except StoreDamaged as err:  # missing chunks: what is intact can still be exported, marked partial
            if err.fix != "resume" or args.partial:
                raise
            from ..export import ExportError

            raise ExportError(f"{describe(err)}; or export what is intact with --partial") from None
    for warning in caught:
        print(f"napari-xt export: warning: {warning.message}", file=sys.stderr)
    return code


def _export(args: argparse.Namespace) -> int:
    from .. import export
    from ..export._common import open_store

    fmt = args.format
    if args.out is None and not (fmt == "ome-zarr" and args.into):
        raise export.ExportError(f"--format {fmt} needs --out PATH" + (" (or --into IMAGE.ome.zarr)"
                                                                       if fmt == "ome-zarr" else "") + ".")
    if args.into and fmt != "ome-zarr":
        raise export.ExportError("--into only applies to --format ome-zarr.")
    store = open_store(args.store)
    common = {"overwrite": args.overwrite, "partial": args.partial}
    counts: dict = {}
    if fmt == "ome-zarr":
        path = export.export_ome_zarr_labels(store, args.out, name=args.name, into=args.into, **common)
        counts = {"levels": _levels_written(path), "classes": store.spec.num_classes}
    elif fmt == "geojson":
        path = export.export_geojson(store, args.out, level=args.level, simplify=args.simplify,
                                     detections_as=args.detections_as,
                                     include_segmentation=not args.no_segmentation,
                                     include_detections=not args.no_detections, counts=counts,
                                     coords=args.coords, **common)
    elif fmt == "geotiff":
        path = export.export_geotiff(store, args.out, counts=counts, **common)
    elif fmt == "gpkg":
        path = export.export_gpkg(store, args.out, level=args.level, simplify=args.simplify,
                                  detections_as=args.detections_as, include_segmentation=not args.no_segmentation,
                                  include_detections=not args.no_detections, counts=counts, **common)
    elif fmt == "csv":
        path = export.export_detections_csv(store, args.out, counts=counts, **common)
    elif fmt == "areas":
        path = export.export_class_areas_csv(store, args.out, counts=counts, **common)
    else:
        path = export.export_scores_json(store, args.out, **common)
        counts = {"windows": len(store.window_scores())}
    what = ", ".join(f"{v} {k}" for k, v in counts.items())
    print(f"wrote {path}" + (f" ({what})" if what else ""))
    return 0


def _levels_written(path: str | Path) -> int:
    import zarr

    attrs: dict[str, Any] = dict(zarr.open_group(str(path), mode="r").attrs)
    return len((attrs.get("ome", attrs).get("multiscales") or [{}])[0].get("datasets", []))
