"""Does labelling where the model suggests save work? A simulated annotator on real data with ground truth (issue 24).

Run: ``python benchmarks/bench_active.py [--data ships,trees] [--seeds 0,1,2] [--rounds 3] [--start 4] [--add 6]``.

Two real data sets, split by the repository's scripts into a part to annotate (the pool) and a held-out part that is
never trained on (written to napari-xt's user cache, never into the repository):

* ``ships``: the 18 training SAR chips of ``scripts/hrsid_chips.py`` (a 2400 x 4800 mosaic; ships on 0.14 % of the
  pixels, in 29 of its 190 regions of 256 px), scored by ship IoU on the 6 held-out chips;
* ``trees``: the top of the NEON tree tile of ``scripts/deepforest_tile.py`` (63 regions, 395 crowns), scored by crown
  F1 (centre rule) on the held-out bottom rows (179 crowns) at the model's own calibrated threshold.

A *labelled region* is one region of the model's plan (256 px) whose ground truth the annotator gives in full: the
ship mask there, or every crown there (the region becomes a "complete" area, so a crown it lacks is a negative). Every
seed starts both strategies from the same few regions (one holding the rare class, as a user starts from an
example), trains, and then adds ``--add`` regions per round, either at random or at the top of ``napari-xt
suggest``'s ranking (the same code: :func:`napari_xt.app.suggest_run.suggest`, run over the whole pool by the engine,
already labelled regions excluded), and retrains from the same start each round: Quick mode (EfficientNet-Lite0 with
its installed ImageNet weights, frozen, features cached) for ``--steps`` optimiser steps, so every round costs the
same whatever was labelled and results do not depend on the machine's load. After every round the model is run on
the held-out part and scored. Prints the curves (score against labelled regions, mean and range over the seeds) and
writes the plot (PIL) to ``docs/images/active_learning.png``; ``--json`` keeps every number (a later run with other
``--seeds`` adds its runs to the file's), ``--plot-only`` redraws from it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(Path(__file__).parent))

REGION = 256


class Pool:
    """One data set: the image to annotate, its regions (level-0 cores), the ground truth, and the held-out score."""

    name = ""
    metric = ""
    #: the trainer's own validation share of the labelled regions: detection needs it (the score threshold is
    #: calibrated there); segmentation does not, and with 4 labelled regions a held-out one is often the only ship
    val_fraction = 0.0
    window = 1  # context window side (regions) for training, suggestions and scoring alike

    def __init__(self, folder: Path):
        from napari_xt.engine.plan import make_plan
        from napari_xt.io import open_image

        self.folder = folder
        self.image = open_image(self.pool_path)
        plan = make_plan(self.image, region_size=REGION, use_mask=False, window_size=2)
        self.cells = np.array([r.core for r in plan.regions], dtype=np.float64)  # level 0 (no pixel size change)
        self.rare = self.rare_cells()

    pool_path: Path

    def rare_cells(self) -> np.ndarray:
        raise NotImplementedError

    def items(self, labelled: list[int]) -> list:
        raise NotImplementedError

    def score(self, model, tmp: Path) -> dict:
        raise NotImplementedError


class Ships(Pool):
    name, metric = "ships", "held-out ship IoU"

    def __init__(self, folder: Path):
        import hrsid_chips
        import tifffile

        if not (folder / "heldout_labels.ome.tif").is_file():
            hrsid_chips.make(folder)
        self.pool_path = folder / "train.ome.tif"
        self.truth = tifffile.imread(folder / "train_labels.ome.tif")
        super().__init__(folder)

    def rare_cells(self) -> np.ndarray:
        return np.array([bool((self.truth[int(y0):int(y1), int(x0):int(x1)] == 1).any())
                         for y0, x0, y1, x1 in self.cells])

    def items(self, labelled: list[int]) -> list:
        from napari_xt.train import SegmentationLabels, TrainingImage

        given = np.full(self.truth.shape, 255, np.uint8)  # 255: not annotated
        for i in labelled:
            y0, x0, y1, x1 = (int(v) for v in self.cells[i])
            given[y0:y1, x0:x1] = self.truth[y0:y1, x0:x1]
        seg = SegmentationLabels.from_array(given, self.truth.shape, ignore=255, class_names=["sea", "ship"])
        return [TrainingImage(self.image, segmentation=seg, name="ships")]

    def score(self, model, tmp: Path) -> dict:
        import hrsid_chips

        from napari_xt.app.driver import predict
        from napari_xt.app.request import make_request

        out = tmp / f"h{time.monotonic_ns()}.xt.zarr"
        predict(make_request(str(self.folder / "heldout.ome.tif"), "m", str(out), use_mask=False,
                             window_size=self.window),
                model=model)
        s = hrsid_chips.score(self.folder, out)
        return {"score": s["ship_iou"], "f1": s["ship_f1"], "predicted_px": s["ship_px_predicted"]}


class Trees(Pool):
    name, metric = "trees", "held-out crown F1"
    val_fraction = 0.2

    def __init__(self, folder: Path):
        import deepforest_tile

        if not (folder / "heldout.csv").is_file():
            deepforest_tile.make(folder)
        self.pool_path = folder / "train.tif"
        self.boxes = deepforest_tile.read_boxes(folder / "train.csv")  # y, x, h, w
        super().__init__(folder)

    def _inside(self, i: int) -> np.ndarray:
        y0, x0, y1, x1 = self.cells[i]
        y, x = self.boxes[:, 0], self.boxes[:, 1]
        return (y >= y0) & (y < y1) & (x >= x0) & (x < x1)

    def rare_cells(self) -> np.ndarray:
        return np.array([bool(self._inside(i).any()) for i in range(len(self.cells))])

    def items(self, labelled: list[int]) -> list:
        """One training item per labelled region, its area the region (a few px in, so the plan's coarse ROI raster
        never takes a neighbour): the crowns the annotator marked there, and nothing learnt outside it."""
        from napari_xt.train import DetectionAnnotations, TrainingImage

        out = []
        for i in labelled:
            b = self.boxes[self._inside(i)]
            y0, x0, y1, x1 = self.cells[i]
            ann = DetectionAnnotations(b[:, 0], b[:, 1], b[:, 2], b[:, 3], np.zeros(len(b), np.int64), ["tree"],
                                       area=(y0 + 3, x0 + 3, y1 - 3, x1 - 3))
            out.append(TrainingImage(self.image, detection=ann, name=f"trees-{i}"))
        return out

    def score(self, model, tmp: Path) -> dict:
        import deepforest_tile

        from napari_xt.app.driver import predict
        from napari_xt.app.request import make_request

        out = tmp / f"h{time.monotonic_ns()}.xt.zarr"
        threshold = float(model.config.score_threshold or 0.3)
        predict(make_request(str(self.folder / "heldout.tif"), "m", str(out), use_mask=False,
                             window_size=self.window, score_threshold=min(0.05, threshold)), model=model)
        s = deepforest_tile.score(self.folder, out, threshold)  # what a user gets: the model's own threshold
        # and at the best threshold for these crowns (no calibration noise: the detector's own quality)
        best = max(deepforest_tile.score(self.folder, out, t)["centre"]["f1"] for t in np.arange(0.05, 0.8, 0.025))
        return {"score": s["centre"]["f1"], "best_f1": best, "box_f1": s["box"]["f1"],
                "detections": s["detections"], "threshold": threshold}

    def dev_score(self, model, labelled: list[int], tmp: Path) -> float:
        """Crown F1 (centre rule, the model's threshold) on the pool's regions not labelled yet: a score to choose
        the method's settings by, so that the held-out crowns only ever report (they are never tuned to)."""
        import deepforest_tile

        from napari_xt.app.driver import predict
        from napari_xt.app.request import make_request
        from napari_xt.store import ResultStore

        out = tmp / f"d{time.monotonic_ns()}.xt.zarr"
        threshold = float(model.config.score_threshold or 0.3)
        predict(make_request(str(self.pool_path), "m", str(out), use_mask=False, window_size=self.window,
                             score_threshold=threshold), model=model)
        dets = ResultStore.open(out).detections()
        pred = np.stack([dets["y"], dets["x"], dets["h"], dets["w"]], 1).astype(np.float64)
        free = np.ones(len(self.cells), bool)
        free[labelled] = False

        def unlabelled(y, x):
            return np.array([any(free[i] and self._in_cell(i, yy, xx) for i in range(len(self.cells)))
                             for yy, xx in zip(y, x, strict=True)], bool)

        keep, truth = unlabelled(pred[:, 0], pred[:, 1]), self.boxes[unlabelled(self.boxes[:, 0], self.boxes[:, 1])]
        tp, fp, fn = deepforest_tile.match(pred[keep], dets["score"][keep], truth, "centre")
        return round(2 * tp / max(2 * tp + fp + fn, 1), 4)

    def _in_cell(self, i: int, y: float, x: float) -> bool:
        y0, x0, y1, x1 = self.cells[i]
        return bool(y0 <= y < y1 and x0 <= x < x1)


def train(pool: Pool, labelled: list[int], args, seed: int, tmp: Path):
    """A model trained from the same start on ``labelled`` (Quick, a fixed number of steps); returns it loaded."""
    from napari_xt.model import load_model
    from napari_xt.train import Trainer, TrainOptions
    from napari_xt.train.sampling import expected_epoch_length

    items = pool.items(labelled)
    out = tmp / f"m{time.monotonic_ns()}.safetensors"
    options = TrainOptions(out=str(out), region_encoder=args.encoder, pretrained=True, region_size=REGION,
                           window_size=pool.window, epochs=1, mode="quick",
                           feature_cache_dir=str(args.cache / "features"),
                           use_mask=False, initial_validation=False, seed=seed, val_fraction=pool.val_fraction,
                           calibration_objects=args.calibration_objects)
    trainer = Trainer(items, options)
    # an epoch is the labelled windows, those holding the rare class repeated (the trainer's own sampling)
    per_epoch = (expected_epoch_length(trainer.window_counts) if trainer.window_counts.shape[1]
                 else len(trainer.train_refs))
    options.epochs = max(1, math.ceil(args.steps / max(per_epoch, 1)))
    trainer.fit()
    return load_model(out)


def suggested(pool: Pool, model, labelled: list[int], k: int, tmp: Path) -> tuple[list[int], int]:
    """The pool regions ``napari-xt suggest`` ranks first (labelled ones excluded, which is also how its automatic
    share of coverage picks learns how many regions are labelled), mapped back to region ids; and how many of them
    were picked for coverage rather than doubt."""
    from napari_xt.app.suggest import SuggestOptions
    from napari_xt.app.suggest_run import suggest

    exclude = tuple(tuple(float(v) for v in pool.cells[i]) for i in labelled)
    found = suggest(str(pool.pool_path), "m", SuggestOptions(top=k, exclude=exclude), image_obj=pool.image,
                    model_obj=model, use_mask=False, window_size=pool.window, folder=tmp)
    index = {tuple(np.round(c).astype(int)): i for i, c in enumerate(pool.cells)}
    picks = [index[tuple(np.round(b).astype(int))] for b in found.boxes]
    return picks, sum(found.reason(n) == "coverage" for n in range(len(found)))


def run_seed(pool: Pool, seed: int, args) -> dict:
    rng = np.random.default_rng(seed)
    rare = np.flatnonzero(pool.rare)
    first = int(rng.choice(rare))
    rest = rng.permutation([i for i in range(len(pool.cells)) if i != first])[: args.start - 1]
    start = [first, *(int(i) for i in rest)]
    curves: dict[str, list] = {}
    with tempfile.TemporaryDirectory(dir=args.cache) as folder:
        tmp = Path(folder)
        t0 = time.perf_counter()
        model0 = train(pool, start, args, seed, tmp)
        s0 = pool.score(model0, tmp)
        if args.dev and hasattr(pool, "dev_score"):
            s0["dev"] = pool.dev_score(model0, start, tmp)
        print(f"  {pool.name} seed {seed}: {len(start)} regions -> {s0['score']:.3f}", flush=True)
        for strategy in ("random", "suggest"):
            labelled, model = list(start), model0
            row = [{"labelled": len(start), **s0, "rare": int(pool.rare[start].sum())}]
            pick_rng = np.random.default_rng(1000 + seed)
            for r in range(1, args.rounds + 1):
                free = [i for i in range(len(pool.cells)) if i not in labelled]
                coverage = 0
                if strategy == "random":
                    new = [int(i) for i in pick_rng.choice(free, min(args.add, len(free)), replace=False)]
                else:
                    new, coverage = suggested(pool, model, labelled, args.add, tmp)
                labelled += new
                model = train(pool, labelled, args, seed, tmp)
                s = pool.score(model, tmp)
                if args.dev and hasattr(pool, "dev_score"):
                    s["dev"] = pool.dev_score(model, labelled, tmp)
                row.append({"labelled": len(labelled), **s, "rare": int(pool.rare[labelled].sum()),
                            "coverage": coverage})
                dev = f" (dev {s['dev']:.3f})" if "dev" in s else ""
                print(f"  {pool.name} seed {seed} {strategy:7s} round {r}: {len(labelled)} regions "
                      f"({row[-1]['rare']} with {'ships' if pool.name == 'ships' else 'crowns'}"
                      f"{f'; {coverage} picked for coverage' if coverage else ''}) -> "
                      f"{s['score']:.3f}{dev}  [{time.perf_counter() - t0:.0f} s]", flush=True)
            curves[strategy] = row
    return {"seed": seed, "start": start, "curves": curves, "seconds": round(time.perf_counter() - t0, 1)}


def summarise(name: str, runs: list[dict], metric: str) -> dict:
    """Mean curves, and how many labelled regions the suggestions needed to reach random's final mean score."""
    counts = [p["labelled"] for p in runs[0]["curves"]["random"]]
    mean = {s: np.mean([[p["score"] for p in r["curves"][s]] for r in runs], axis=0) for s in ("random", "suggest")}
    target = float(mean["random"][-1])
    reached = next((c for c, v in zip(counts, mean["suggest"], strict=True) if v >= target), None)
    print(f"\n{name}: {metric}, mean over seeds {[r['seed'] for r in runs]} (min-max):")
    print("  labelled  " + "  ".join(f"{c:>15d}" for c in counts))
    for s in ("random", "suggest"):
        vals = np.array([[p["score"] for p in r["curves"][s]] for r in runs])
        print(f"  {s:8s}  " + "  ".join(f"{m:.3f} ({lo:.2f}-{hi:.2f})" for m, lo, hi in
                                        zip(vals.mean(0), vals.min(0), vals.max(0), strict=True)))
    if "best_f1" in runs[0]["curves"]["random"][0]:
        for s in ("random", "suggest"):
            vals = np.array([[p["best_f1"] for p in r["curves"][s]] for r in runs])
            print(f"  {s:8s}  " + "  ".join(f"{m:15.3f}" for m in vals.mean(0)) + "   (F1 at the best threshold)")
    if "dev" in runs[0]["curves"]["random"][-1]:
        for s in ("random", "suggest"):
            vals = np.array([[p.get("dev", np.nan) for p in r["curves"][s]] for r in runs])
            print(f"  {s:8s}  " + "  ".join(f"{m:15.3f}" for m in np.nanmean(vals, 0)) + "   (dev: the pool's "
                  "unlabelled regions)")
    rare = {s: np.mean([[p["rare"] for p in r["curves"][s]] for r in runs], axis=0) for s in ("random", "suggest")}
    print("  regions holding the rare class (mean): " + "; ".join(
        f"{s} " + " ".join(f"{v:.1f}" for v in rare[s]) for s in ("random", "suggest")))
    half = reached is not None and reached <= counts[-1] / 2
    worse = bool(np.any(mean["suggest"][1:] < mean["random"][1:] - 0.02))
    print(f"  random's final score {target:.3f} at {counts[-1]} regions; suggestions reach it at "
          f"{reached if reached is not None else 'never (within the rounds)'} regions"
          f"{' (at most half: yes)' if half else ''}; suggestions below random (by > 0.02) at some round: "
          f"{'yes' if worse else 'no'}")
    return {"counts": counts, "mean": {k: v.tolist() for k, v in mean.items()}, "reached": reached,
            "half": half, "worse": worse}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="ships,trees")
    p.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[0, 1, 2])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--start", type=int, default=4, help="labelled regions to start from (one with the rare class)")
    p.add_argument("--add", type=int, default=6, help="regions added per round")
    p.add_argument("--steps", type=int, default=60, help="optimiser steps per training (rounded up to epochs)")
    p.add_argument("--encoder", default="efficientnet-lite0")
    p.add_argument("--window", type=int, default=1, help="context window side in regions (training, suggestions and "
                   "scoring; 1: each step trains the labelled region alone, not 3 unlabelled neighbours with it)")
    p.add_argument("--calibration-objects", type=int, default=50, help="the trainer's own (detection: a threshold "
                   "calibrated on every labelled window while validation holds fewer objects; 0: validation alone)")
    p.add_argument("--dev", action="store_true", help="also score each round on the pool's unlabelled regions (trees): "
                   "the number to choose settings by, never the held-out one")
    p.add_argument("--json", type=Path, default=None, help="write (or with --plot-only read) every number here")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "images" / "active_learning.png")
    p.add_argument("--plot-only", action="store_true")
    args = p.parse_args()
    from napari_xt.app.layers import user_cache_dir

    args.cache = user_cache_dir() / "bench" / "active"
    args.cache.mkdir(parents=True, exist_ok=True)
    results: dict = json.loads(args.json.read_text()) if args.json and args.json.is_file() else {}
    if not args.plot_only:
        import torch

        torch.set_num_threads(2)
        for name in args.data.split(","):
            pool = (Ships if name == "ships" else Trees)(user_cache_dir() / "bench" / ("hrsid" if name == "ships"
                                                                                          else "trees"))
            pool.window = args.window
            print(f"{name}: {len(pool.cells)} regions of {REGION} px in the pool, {int(pool.rare.sum())} with "
                  f"{'ships' if name == 'ships' else 'crowns'}; start {args.start}, +{args.add} per round, "
                  f"{args.rounds} rounds, {args.steps} steps per training ({args.encoder}, Quick)", flush=True)
            kept = [r for r in results.get(name, {}).get("runs", []) if r["seed"] not in args.seeds]  # more seeds
            results[name] = {"metric": pool.metric, "runs": kept, "args": {k: str(v) for k, v in vars(args).items()}}
            for seed in args.seeds:  # kept after every seed: a long run stopped half-way keeps what it measured
                results[name]["runs"].append(run_seed(pool, seed, args))
                if args.json:
                    args.json.write_text(json.dumps(results, indent=1))
    for name, res in results.items():
        res["summary"] = summarise(name, res["runs"], res["metric"])
    from _plot import plot_curves

    plot_curves(results, args.plot)
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
