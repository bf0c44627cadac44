"""Turn the shared NEON tree tile into `napari-xt train` input, and score a prediction store against its held-out part.

The tile (``../shared/data/annot/deepforest_train``: a real 10 cm airborne RGB orthophoto, 2299 x 2472 px, with 574
hand-drawn crown boxes as CSV ``x,y,width,height,class``) must never enter the repository, so this script writes its
parts to a folder you name (e.g. /tmp). Split: the top rows (y < 1736) are trained on; the bottom 736 rows are held
out and never seen in training (a crown belongs to the part holding its centre).

    python scripts/deepforest_tile.py make /tmp/trees      # train.tif + train.csv, heldout.tif + heldout.csv
    napari-xt train --image /tmp/trees/train.tif --points /tmp/trees/train.csv --out /tmp/trees/m.safetensors
    napari-xt predict /tmp/trees/heldout.tif --model /tmp/trees/m.safetensors --out /tmp/trees/h.xt.zarr --no-mask
    python scripts/deepforest_tile.py score /tmp/trees /tmp/trees/h.xt.zarr

Scores (JSON): precision, recall and F1 with two matching rules, both one-to-one and greedy by score:
``centre`` (a predicted centre within half the crown's size, ``0.5 * sqrt(w * h)``, of an annotated centre: "the tree
was found") and ``box`` (box IoU >= 0.4, DeepForest's own evaluation rule; needs predicted sizes).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "annot" / "deepforest_train"
TILE = "yell_528000_4978000"
SPLIT_ROW = 1736


def read_boxes(path: Path) -> np.ndarray:
    """(N, 4) float array of y, x, h, w (box centre and size, px) from a ``x,y,width,height,class`` CSV."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return np.array([[float(r["y"]), float(r["x"]), float(r["height"]), float(r["width"])] for r in rows],
                    np.float64).reshape(-1, 4)


def write_boxes(path: Path, boxes: np.ndarray) -> None:
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["x", "y", "width", "height", "class"])
        for y, x, h, w in boxes:
            out.writerow([f"{x:.1f}", f"{y:.1f}", f"{w:.0f}", f"{h:.0f}", "tree"])


def make(out: Path) -> None:
    import tifffile

    out.mkdir(parents=True, exist_ok=True)
    image = tifffile.imread(DATA / f"{TILE}.tif")
    boxes = read_boxes(DATA / f"{TILE}.csv")
    top = boxes[:, 0] < SPLIT_ROW
    parts = (("train", image[:SPLIT_ROW], boxes[top]),
             ("heldout", image[SPLIT_ROW:], boxes[~top] - np.array([SPLIT_ROW, 0, 0, 0])))
    for name, pixels, part in parts:
        tifffile.imwrite(out / f"{name}.tif", pixels, tile=(256, 256), photometric="rgb")  # no pixel size: as the tile
        write_boxes(out / f"{name}.csv", part)
        print(f"{name}: {pixels.shape[1]} x {pixels.shape[0]} px, {len(part)} crowns")


def match(pred: np.ndarray, score: np.ndarray, truth: np.ndarray, rule: str) -> tuple[int, int, int]:
    """Greedy one-to-one matching, best score first: (tp, fp, fn). Rows are y, x, h, w."""
    used = np.zeros(len(truth), bool)
    tp = 0
    for i in np.argsort(-score, kind="stable"):
        y, x, h, w = pred[i]
        if rule == "centre":
            d = np.hypot(truth[:, 0] - y, truth[:, 1] - x)
            ok = d <= 0.5 * np.sqrt(truth[:, 2] * truth[:, 3])
            quality = -d
        else:
            iy = np.clip(np.minimum(y + h / 2, truth[:, 0] + truth[:, 2] / 2)
                         - np.maximum(y - h / 2, truth[:, 0] - truth[:, 2] / 2), 0, None)
            ix = np.clip(np.minimum(x + w / 2, truth[:, 1] + truth[:, 3] / 2)
                         - np.maximum(x - w / 2, truth[:, 1] - truth[:, 3] / 2), 0, None)
            inter = iy * ix
            iou = inter / (h * w + truth[:, 2] * truth[:, 3] - inter + 1e-9)
            ok = iou >= 0.4
            quality = iou
        candidates = np.flatnonzero(ok & ~used)
        if candidates.size:
            used[candidates[np.argmax(quality[candidates])]] = True
            tp += 1
    return tp, len(pred) - tp, int((~used).sum())


def score(folder: Path, store: Path, threshold: float | None = None) -> dict:
    """Precision/recall/F1 of the store's detections against the held-out crowns (both matching rules)."""
    from napari_xt.store import ResultStore

    truth = read_boxes(folder / "heldout.csv")
    dets = ResultStore.open(store).detections()
    keep = np.ones(len(dets["score"]), bool) if threshold is None else dets["score"] >= threshold
    pred = np.stack([dets["y"], dets["x"], dets["h"], dets["w"]], 1)[keep].astype(np.float64)
    out: dict = {"crowns": len(truth), "detections": int(keep.sum())}
    for rule in ("centre", "box"):
        tp, fp, fn = match(pred, dets["score"][keep], truth, rule)
        p, r = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
        out[rule] = {"precision": round(p, 4), "recall": round(r, 4),
                     "f1": round(2 * tp / max(2 * tp + fp + fn, 1), 4)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("make").add_argument("out", type=Path)
    s = sub.add_parser("score")
    s.add_argument("folder", type=Path)
    s.add_argument("store", type=Path)
    s.add_argument("--threshold", type=float, help="score only detections at or above this score")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"no tree tile at {DATA}", file=sys.stderr)
        return 1
    if args.cmd == "make":
        make(args.out)
    else:
        print(json.dumps(score(args.folder, args.store, args.threshold)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
