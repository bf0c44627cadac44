"""Turn the shared HRSID ship chips into `napari-xt train` input, and score a prediction store against held-out chips.

The chips (``../shared/data/annot/hrsid_train``: 800x800 RGB JPEG of grey SAR amplitude + PNG masks, ship where
green == 255) are research data that must never enter the repository, so this script writes its mosaics to a folder
you name (e.g. /tmp). Split: every 4th chip in name order is held out (6 of 24), the rest are trained on.

    python scripts/hrsid_chips.py make /tmp/hrsid          # train.ome.tif + train_labels.ome.tif, heldout.*
    napari-xt train --image /tmp/hrsid/train.ome.tif --labels /tmp/hrsid/train_labels.ome.tif \
        --ignore-label 255 --class-names sea,ship --out /tmp/hrsid/ship.safetensors
    napari-xt predict /tmp/hrsid/heldout.ome.tif --model /tmp/hrsid/ship.safetensors --out /tmp/hrsid/h.xt.zarr \
        --no-mask
    python scripts/hrsid_chips.py score /tmp/hrsid /tmp/hrsid/h.xt.zarr   # ship IoU and pixel F1 (JSON)

Labels: 0 = sea, 1 = ship (dense ground truth, hence ``--ignore-label 255``). Chips are tiled without gaps, so a
region can straddle two chips; scoring uses every pixel of the held-out mosaic.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "annot" / "hrsid_train"


def chips(data: Path = DATA) -> list[tuple[Path, Path]]:
    """(image, mask) pairs in name order."""
    images = sorted((data / "images").glob("*.jpg"))
    return [(p, data / "masks" / (p.stem + ".png")) for p in images]


def split(pairs: list) -> tuple[list, list]:
    """Every 4th chip (index 3, 7, ...) is held out."""
    return [p for i, p in enumerate(pairs) if i % 4 != 3], [p for i, p in enumerate(pairs) if i % 4 == 3]


def mosaic(pairs: list, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Chips side by side, ``cols`` per row: (H, W, 3) uint8 image and (H, W) uint8 labels (0 sea, 1 ship)."""
    from PIL import Image

    rows = -(-len(pairs) // cols)
    img = np.zeros((rows * 800, cols * 800, 3), np.uint8)
    lab = np.full((rows * 800, cols * 800), 255, np.uint8)  # cells without a chip are not annotated
    for n, (ip, mp) in enumerate(pairs):
        r, c = divmod(n, cols)
        img[r * 800:(r + 1) * 800, c * 800:(c + 1) * 800] = np.asarray(Image.open(ip).convert("RGB"))
        lab[r * 800:(r + 1) * 800, c * 800:(c + 1) * 800] = (np.asarray(Image.open(mp))[..., 1] == 255)
    return img, lab


def make(out: Path) -> None:
    import tifffile

    out.mkdir(parents=True, exist_ok=True)
    train, held = split(chips())
    for name, pairs, cols in (("train", train, 6), ("heldout", held, 3)):
        img, lab = mosaic(pairs, cols)
        tifffile.imwrite(out / f"{name}.ome.tif", img, ome=True, tile=(256, 256), photometric="rgb")
        tifffile.imwrite(out / f"{name}_labels.ome.tif", lab, ome=True, tile=(256, 256))
        print(f"{name}: {len(pairs)} chips, {img.shape[0]} x {img.shape[1]} px, ship {lab.mean() * 100:.3f} %")


def score(folder: Path, store: Path) -> dict:
    """Ship IoU and pixel F1 (= Dice) of the store's labels against the held-out mosaic's ground truth."""
    import tifffile

    from napari_xt.store import ResultStore

    truth = tifffile.imread(folder / "heldout_labels.ome.tif").reshape(-1)
    pred = np.asarray(ResultStore.open(store).labels[0][:]).reshape(-1)[:truth.size]
    keep = truth != 255
    t, p = truth[keep] == 1, pred[keep] == 1
    tp, fp, fn = int((t & p).sum()), int((~t & p).sum()), int((t & ~p).sum())
    iou = tp / max(tp + fp + fn, 1)
    f1 = 2 * tp / max(2 * tp + fp + fn, 1)
    sea_iou = int((~t & ~p).sum()) / max(int((~t | ~p).sum()), 1)
    return {"ship_iou": round(iou, 4), "ship_f1": round(f1, 4), "sea_iou": round(sea_iou, 4),
            "ship_px_true": int(t.sum()), "ship_px_predicted": int(p.sum())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("make").add_argument("out", type=Path)
    s = sub.add_parser("score")
    s.add_argument("folder", type=Path)
    s.add_argument("store", type=Path)
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"no chips at {DATA}", file=sys.stderr)
        return 1
    if args.cmd == "make":
        make(args.out)
    else:
        print(json.dumps(score(args.folder, args.store)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
