"""``napari-xt train``: fine-tune xT on your own annotations into a checkpoint the dock and ``predict`` can use."""

from __future__ import annotations

import argparse
import json
import time

from . import _models


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="fine-tune an xT model on your annotations (labels, points or image classes)",
        description="Train region encoder + context encoder + heads the memory-bounded way on one or more large "
                    "images. Label images: 0 = not annotated (ignored), other values = class ids (use "
                    "--ignore-label 255 for dense ground truth with a background class 0).")
    p.add_argument("--image", action="append", required=True, metavar="IMG", help="training image (repeatable)")
    ann = p.add_argument_group("annotations (at least one kind; one file per --image, in the same order)")
    ann.add_argument("--labels", action="append", metavar="LBL", help="label image (TIFF/OME-TIFF/OME-Zarr/.npy)")
    ann.add_argument("--points", action="append", metavar="PTS", help="objects: CSV (x,y[,width,height][,class]) "
                     "or GeoJSON (QuPath points/polygons), level-0 px")
    ann.add_argument("--classes", metavar="CSV", help="image-level classes: CSV rows 'image,class'")
    p.add_argument("--out", required=True, help="checkpoint to write (.safetensors); the best epoch is kept")
    p.add_argument("--base", help=_models.zoo_help(
        "start from this checkpoint (.safetensors, released xT .ckpt/.pth) or model ({names}); default: a fresh "
        "model (--region-encoder/--context-encoder)", "demo", "preset", "imported"))
    p.add_argument("--region-encoder", default="tiny", help=_models.zoo_help(
        "fresh model's region encoder (default tiny): {names}; see `napari-xt models --kind encoder`", "encoder"))
    p.add_argument("--context-encoder", default="hyper", help="fresh model's context encoder (default hyper)")
    p.add_argument("--context-options", metavar="JSON", help='fresh model\'s context encoder options, e.g. '
                   '\'{"hidden": 128}\'')
    p.add_argument("--pretrained", action="store_true", help="timm-pretrained region encoder (needs it cached)")
    p.add_argument("--class-names", help="comma-separated segmentation class names, in class-id order")
    p.add_argument("--class-colors", help="segmentation class colours 'r,g,b;r,g,b;...' in class-id order")
    p.add_argument("--ignore-label", type=int, default=0, help="label value meaning 'not annotated' (default 0)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--region-size", type=int, help="region size in analysis px (default: the base's, else 256)")
    p.add_argument("--sub-region-size", type=int, help="sub-region size for a fresh model")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--mpp", type=float, help="analysis pixel size (default: the base's, else level 0)")
    where.add_argument("--level", type=int, help="pyramid level to train on")
    p.add_argument("--window-size", type=int, default=2, help="regions per context-window side (default 2)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--freeze-encoder", action="store_true", help="train only the context encoder and heads")
    p.add_argument("--grad-fraction", type=float, default=1.0, help="share of regions with gradients (default 1)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of windows held out (default 0.2)")
    p.add_argument("--patience", type=int, default=5, help="epochs without improvement before stopping")
    p.add_argument("--max-windows", type=int, help="training windows per epoch (random subset)")
    p.add_argument("--no-mask", action="store_true", help="also train on background regions")
    p.add_argument("--no-augment", action="store_true", help="no flips/rotations/colour/speckle augmentation")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
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
        SegmentationLabels,
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
        seg = (SegmentationLabels.from_file(args.labels[i], shape, ignore=args.ignore_label, class_names=names or [],
                                            class_colors=colors)
               if args.labels else None)
        det = points_from_file(args.points[i], det_names) if args.points else None
        if det is not None and det_names is None:
            det_names = det.class_names
        out.append(TrainingImage(image, segmentation=seg, detection=det, image_class=classes[i], name=str(path)))
    return out


def parse_colors(text: str) -> list[list[int]]:
    try:
        colors = [[int(v) for v in part.split(",")] for part in text.split(";") if part.strip()]
    except ValueError:
        raise ValueError(f"--class-colors {text!r}: expected 'r,g,b;r,g,b;...' with integers 0-255") from None
    if any(len(c) != 3 or min(c) < 0 or max(c) > 255 for c in colors):
        raise ValueError(f"--class-colors {text!r}: each colour is three integers 0-255")
    return colors


def run(args: argparse.Namespace) -> int:
    from ..train import Augment, Trainer, TrainOptions

    try:
        context_kwargs = json.loads(args.context_options) if args.context_options else {}
    except ValueError as err:
        raise ValueError(f"--context-options is not valid JSON ({err})") from None
    if not isinstance(context_kwargs, dict):
        raise TypeError("--context-options must be a JSON object, e.g. '{\"hidden\": 128}'")
    images = build_images(args)
    options = TrainOptions(
        out=args.out, base=args.base, region_encoder=args.region_encoder, context_encoder=args.context_encoder,
        context_kwargs=context_kwargs, region_size=args.region_size, sub_region_size=args.sub_region_size,
        pixel_size=args.mpp, level=args.level,
        window_size=args.window_size, epochs=args.epochs, lr=args.lr, freeze_encoder=args.freeze_encoder,
        grad_fraction=args.grad_fraction, val_fraction=args.val_fraction, patience=args.patience,
        max_windows=args.max_windows, device=args.device, precision=args.precision, seed=args.seed,
        augment=Augment(geometric=False, colour=0, speckle_looks=0) if args.no_augment else Augment(),
        use_mask=not args.no_mask, overwrite=args.overwrite, pretrained=args.pretrained, name=args.name,
        description=args.description,
    )
    trainer = Trainer(images, options)
    progress = None if args.json else _Progress()
    summary = trainer.fit(progress.event if progress else None)
    if progress:
        progress.stop()
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

    def event(self, e: dict) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        if e["kind"] == "start":
            init = e.get("initial", {}).get("score")
            self.val = f"{init:.3f} (untrained)" if isinstance(init, float) else "-"
            self.bar = Progress(TextColumn("[bold]train"), TextColumn("epoch {task.fields[epoch]}"), BarColumn(),
                                MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                                TextColumn("val {task.fields[val]}"), TimeRemainingColumn())
            self.task = self.bar.add_task("steps", total=e["steps"], epoch=0, loss="-", val=self.val)
            self.t0 = time.perf_counter()
            self.bar.start()
        elif e["kind"] == "step" and self.bar:
            self.bar.update(self.task, completed=e["step"], epoch=e["epoch"], loss=f"{e['loss']:.3f}")
        elif e["kind"] == "epoch" and self.bar:
            score = e["val"].get("score") if e["val"] else None
            if isinstance(score, float):
                self.val = f"{score:.3f}"
            self.bar.update(self.task, val=self.val)

    def stop(self) -> None:
        if self.bar:
            self.bar.stop()
