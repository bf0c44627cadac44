"""The memory-bounded xT training loop (``Trainer``): one context window per optimiser step, streamed in chunks.

A window of k x k regions is fed to the model the way the engine runs it — region encoder, then the context
encoder step with the memory carried over, then the heads — but a few regions (a *chunk*) at a time, with
``backward()`` after each chunk and the context memory detached between chunks (Transformer-XL's truncated
back-propagation). Region encoding is gradient-checkpointed per region. So the autograd graph never holds more than
one chunk, and peak memory does not grow with the window or the image (``benchmarks/bench_train.py`` measures it).
Gradients of all chunks accumulate and the optimiser steps once per window.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from ..engine.normalise import Normaliser
from ..engine.run import autocast_dtype, resolve_device
from ..errors import OutputError
from ..model import save_model
from ..model.heads import decode_detections
from ..model.xt import RegionFeatures
from .annotations import AnnotationError
from .data import Augment, RegionCache, TrainingImage, build_windows, iter_window
from .losses import (
    DetectionMetric,
    SegmentationMetric,
    detection_loss,
    detection_targets,
    segmentation_loss,
)
from .model_setup import default_colors, make_model


@dataclass
class TrainOptions:
    """Everything ``napari-xt train`` and the Fine-tune tab can set (see docs/train.md)."""

    out: str
    base: str | None = None  # checkpoint / preset to start from; None: a fresh model
    region_encoder: str = "tiny"
    context_encoder: str = "hyper"
    context_kwargs: dict = field(default_factory=dict)
    region_size: int | None = None
    sub_region_size: int | None = None
    pixel_size: float | None = None  # analysis px size; None: the base's, else level 0 (or ``level``)
    level: int | None = None
    window_size: int = 2
    epochs: int = 10
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: float = 0.05  # fraction of all steps
    grad_clip: float = 1.0
    freeze_encoder: bool = False
    checkpointing: bool = True
    chunk: int = 1  # regions per backward chunk
    grad_fraction: float = 1.0  # share of chunks that get gradients (others only advance the memory)
    val_fraction: float = 0.2
    patience: int = 5  # epochs without validation improvement before stopping
    max_windows: int | None = None  # training windows per epoch (random subset)
    device: str = "auto"
    precision: str = "fp32"
    seed: int = 0
    augment: Augment = field(default_factory=Augment)
    cache_mb: float = 1024.0
    use_mask: bool = True
    overwrite: bool = False
    pretrained: bool = False
    class_names: list[str] | None = None  # segmentation class names (else from the labels)
    name: str = ""
    description: str = ""


class Trainer:
    """``Trainer(images, options).fit(on_progress)`` -> final metrics; ``stop()`` from any thread keeps the best."""

    def __init__(self, images: list[TrainingImage], options: TrainOptions):
        if not images:
            raise AnnotationError("no training images given")
        self.images, self.options = images, options
        out = Path(options.out)
        if out.suffix != ".safetensors":
            raise OutputError(f"the model file must end with .safetensors, not {out.name}", out)
        if out.exists() and not options.overwrite:
            raise OutputError(f"{out} exists", out, exists=True)
        self.out = out
        self.device = resolve_device(options.device)
        self.amp = autocast_dtype(options.precision, self.device)
        self.tasks, names, colors = _tasks(images, options.class_names)
        first = images[0].image
        self.model = make_model(self.tasks, names, colors, base=options.base, region_encoder=options.region_encoder,
                                context_encoder=options.context_encoder, region_size=options.region_size,
                                sub_region_size=options.sub_region_size, first_image=first,
                                pretrained=options.pretrained, context_kwargs=options.context_kwargs)
        cfg = self.model.config
        pixel = options.pixel_size if options.pixel_size is not None else (
            cfg.pixel_size if options.level is None else None)
        self.windows = build_windows(images, region_size=cfg.region_size, window_size=options.window_size,
                                     pixel_size=pixel, level=options.level, use_mask=options.use_mask)
        self.normalisers = [Normaliser.from_config(cfg, item.image) for item in images]
        self.train_refs, self.val_refs = self.windows.split(options.val_fraction, options.seed)
        plan0 = self.windows.plans[0]
        if first.pixel_size:
            cfg.pixel_size = float(first.pixel_size[1]) * plan0.downsample_to_level0
        cfg.name = options.name or cfg.name or out.stem
        cfg.description = options.description or cfg.description
        self.model.to(self.device)
        self._stop = False
        self.cache = RegionCache(options.cache_mb)
        self.history: list[dict] = []

    def stop(self) -> None:
        self._stop = True

    # -- one window ------------------------------------------------------------------------------------------------
    def _encode(self, x: torch.Tensor, grad: bool) -> RegionFeatures:
        model = self.model
        if not grad or self.options.freeze_encoder:
            with torch.no_grad():
                return model.encode_regions(x)
        if not self.options.checkpointing:
            return model.encode_regions(x)

        def run(t):
            f = model.encode_regions(t)
            return (f.tokens, *f.maps)

        parts = [checkpoint(run, x[i:i + 1], use_reentrant=False) for i in range(x.shape[0])]
        tokens = torch.cat([p[0] for p in parts])
        maps = [torch.cat([p[k] for p in parts]) for k in range(1, len(parts[0]))]
        grid = (int(maps[-1].shape[-2]), int(maps[-1].shape[-1]))
        return RegionFeatures(tokens, grid, maps, (int(x.shape[-2]), int(x.shape[-1])))

    def _chunks(self, ref, rng, augment: bool):
        samples = iter_window(self.windows, ref, self.normalisers[ref.image], rng if augment else None,
                              self.options.augment if augment else None, self.cache)
        chunk = []
        for s in samples:
            chunk.append(s)
            if len(chunk) == self.options.chunk:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _forward_chunk(self, chunk, memory, grad: bool):
        model = self.model
        x = torch.from_numpy(np.stack([s.pixels for s in chunk])).to(self.device)
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            feats = self._encode(x, grad)
            positions = model.region_positions([s.position for s in chunk], feats.grid, self.device)
            ctx, memory = model.step_context(feats, memory, positions, batch=1)
            outs = model.decode(feats, ctx)
        return outs, ctx, memory

    def _chunk_loss(self, outs, chunk) -> torch.Tensor:
        loss = torch.zeros((), device=self.device)
        if "segmentation" in outs:
            target = torch.from_numpy(np.stack([s.segmentation for s in chunk])).to(self.device)
            total, count = segmentation_loss(outs["segmentation"], target)
            loss = loss + total / max(count, 1)
        if "detection" in outs:
            head = self.model.heads["detection"]
            cells = outs["detection"]["heatmap"].shape[-1]
            t = detection_targets([s.objects for s in chunk], head.num_classes, cells, head.stride, self.device)
            total, n_obj = detection_loss(outs["detection"], t)
            loss = loss + total / max(n_obj, 1.0)
        return loss

    def _train_window(self, ref, rng) -> float:
        model = self.model
        memory = model.init_memory(1, device=self.device)
        n_regions = len(self.windows.regions(ref))
        n_chunks = math.ceil(n_regions / self.options.chunk)
        with_grad = np.ones(n_chunks, bool)
        if self.options.grad_fraction < 1.0:
            k = max(1, round(self.options.grad_fraction * n_chunks))
            with_grad[:] = False
            with_grad[rng.choice(n_chunks, k, replace=False)] = True
        label = self.windows.images[ref.image].image_class
        token_sum, n_tokens, total = None, 0, 0.0
        for i, chunk in enumerate(self._chunks(ref, rng, augment=True)):
            grad = bool(with_grad[i])
            last = i == n_chunks - 1
            with torch.set_grad_enabled(grad or (last and label is not None)):
                outs, ctx, memory = self._forward_chunk(chunk, memory, grad)
                loss = self._chunk_loss(outs, chunk) / n_chunks if grad else torch.zeros((), device=self.device)
                flat = ctx.reshape(-1, ctx.shape[-1]).float()
                token_sum = flat.sum(0) + (token_sum.detach() if token_sum is not None else 0)
                n_tokens += flat.shape[0]
                if last and label is not None:
                    with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
                        logits = model.classify(memory, (token_sum / n_tokens)[None])
                    target = torch.tensor([label.index], device=self.device)
                    loss = loss + torch.nn.functional.cross_entropy(logits.float(), target)
                if loss.requires_grad:
                    self.scaler.scale(loss).backward()
                total += float(loss.detach())
            memory = _detach(memory)
        return total

    # -- validation ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict:
        """Validation metrics: mIoU (segmentation), F1 (detection), accuracy (classification), and their mean."""
        model = self.model.eval()
        seg = SegmentationMetric(self.tasks["segmentation"]["num_classes"]) if "segmentation" in self.tasks else None
        det = DetectionMetric() if "detection" in self.tasks else None
        correct = seen = 0
        for ref in self.val_refs:
            memory = model.init_memory(1, device=self.device)
            token_sum, n_tokens = torch.zeros((), device=self.device), 0
            for chunk in self._chunks(ref, None, augment=False):
                outs, ctx, memory = self._forward_chunk(chunk, memory, grad=False)
                token_sum = token_sum + ctx.reshape(-1, ctx.shape[-1]).float().sum(0)
                n_tokens += ctx.shape[0] * ctx.shape[1]
                for j, s in enumerate(chunk):
                    if seg is not None:
                        seg.update(outs["segmentation"][j].argmax(0).cpu().numpy(), s.segmentation)
                    if det is not None:
                        pred = decode_detections(outs["detection"], j, score_threshold=0.3)
                        det.update(pred, s.objects)
            label = self.windows.images[ref.image].image_class
            if label is not None:
                logits = model.classify(memory, (token_sum / max(n_tokens, 1))[None])
                correct += int(int(logits.argmax(-1)) == label.index)
                seen += 1
        out: dict[str, Any] = {}
        if seg is not None:
            out["miou"] = seg.miou()
            out["iou"] = [None if np.isnan(v) else round(float(v), 4) for v in seg.iou()]
        if det is not None:
            out["f1"] = det.f1()
        if seen:
            out["accuracy"] = correct / seen
        scores = [v for k, v in out.items() if k in ("miou", "f1", "accuracy") and not np.isnan(v)]
        out["score"] = float(np.mean(scores)) if scores else float("nan")
        return out

    # -- the loop --------------------------------------------------------------------------------------------------
    def fit(self, on_progress: Callable[[dict], None] | None = None) -> dict:
        """Train; keeps the best checkpoint (by validation score) at ``options.out``; returns the final summary."""
        event: dict = {}
        for event in self.events():
            if on_progress is not None:
                on_progress(event)
        return {k: v for k, v in event.items() if k != "kind"}

    def events(self) -> Iterator[dict]:
        """Train, yielding progress events: ``start``, one ``step`` per window, one ``epoch`` each, then ``done``
        (the summary). A generator, so a GUI worker can relay each event and ``stop()`` between any two."""
        o, model = self.options, self.model
        rng = np.random.default_rng(o.seed)
        torch.manual_seed(o.seed)
        params = [p for n, p in model.named_parameters()
                  if not (o.freeze_encoder and n.startswith("region_encoder."))]
        if o.freeze_encoder:
            model.region_encoder.requires_grad_(False)
        optimiser = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
        per_epoch = min(len(self.train_refs), o.max_windows or len(self.train_refs))
        steps = max(1, per_epoch * o.epochs)
        warm = max(1, int(o.warmup * steps))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: min(1.0, (s + 1) / warm) * (
            0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        initial = self.evaluate() if self.val_refs else {}
        best, best_epoch, since_best, step = -math.inf, -1, 0, 0
        t0 = time.perf_counter()
        yield {"kind": "start", "epochs": o.epochs, "steps": steps, "train_windows": len(self.train_refs),
               "val_windows": len(self.val_refs), "initial": initial}
        for epoch in range(1, o.epochs + 1):
            model.train()
            if o.freeze_encoder:
                model.region_encoder.eval()
            order = rng.permutation(len(self.train_refs))[:per_epoch]
            losses = []
            for n, idx in enumerate(order):
                if self._stop:
                    break
                optimiser.zero_grad(set_to_none=True)
                losses.append(self._train_window(self.train_refs[idx], rng))
                self.scaler.unscale_(optimiser)
                torch.nn.utils.clip_grad_norm_(params, o.grad_clip)
                self.scaler.step(optimiser)
                self.scaler.update()
                schedule.step()
                step += 1
                elapsed = time.perf_counter() - t0
                yield {"kind": "step", "epoch": epoch, "step": step, "steps": steps, "loss": losses[-1],
                       "lr": schedule.get_last_lr()[0], "eta_s": elapsed / step * (steps - step),
                       "window": n + 1, "windows": len(order)}
            if not losses:
                break
            val = self.evaluate() if self.val_refs else {}
            score = val.get("score", float("nan")) if val else -float(np.mean(losses))
            improved = not np.isnan(score) and score > best
            if improved:
                best, best_epoch, since_best = score, epoch, 0
                self._save()
            else:
                since_best += 1
            record = {"kind": "epoch", "epoch": epoch, "epochs": o.epochs, "loss": float(np.mean(losses)),
                      "val": val, "best": best, "best_epoch": best_epoch, "saved": improved,
                      "seconds": time.perf_counter() - t0}
            self.history.append(record)
            yield record
            if self._stop or since_best >= o.patience:
                break
        if best_epoch < 0:
            self._save()  # nothing improved on a finite score (e.g. stopped at once): keep what we have
        summary = {"out": str(self.out), "epochs_run": len(self.history), "best_epoch": best_epoch,
                   "best_score": None if best == -math.inf else best, "initial": initial,
                   "final": self.history[-1]["val"] if self.history else {}, "stopped": self._stop,
                   "train_windows": len(self.train_refs), "val_windows": len(self.val_refs),
                   "seconds": round(time.perf_counter() - t0, 2), "tasks": sorted(self.tasks)}
        yield {"kind": "done", **summary}

    def _save(self) -> None:
        """Write the checkpoint beside ``out`` then rename: ``out`` is always a whole, loadable model."""
        tmp = self.out.with_name(f".{self.out.stem}.partial.safetensors")
        was_training = self.model.training
        save_model(self.model, tmp)
        os.replace(tmp, self.out)
        self.model.train(was_training)


def _detach(memory):
    if isinstance(memory, torch.Tensor):
        return memory.detach()
    if isinstance(memory, dict):
        return {k: _detach(v) for k, v in memory.items()}
    if isinstance(memory, (list, tuple)):
        return type(memory)(_detach(v) for v in memory)
    return memory


def _tasks(images: list[TrainingImage], seg_names: list[str] | None):
    """Heads and class names implied by the annotations (all images must agree on the class lists)."""
    tasks, names, colors = {}, {}, {}
    segs = [i.segmentation for i in images if i.segmentation is not None]
    if segs:
        given = seg_names or next((s.class_names for s in segs if s.class_names), None)
        n = len(given) if given else max(s.num_classes() for s in segs)
        if n < 2:
            raise AnnotationError("segmentation needs at least 2 classes in the labels (or class names given)")
        tasks["segmentation"] = {"num_classes": n}
        names["segmentation"] = list(given) if given else ["unlabelled"] + [f"class {i}" for i in range(1, n)]
        cols = next((s.class_colors for s in segs if s.class_colors), None)
        colors["segmentation"] = [list(c) for c in cols] if cols and len(cols) == n else default_colors(n)
    dets = [i.detection for i in images if i.detection is not None]
    if dets:
        det_names = dets[0].class_names
        if any(d.class_names != det_names for d in dets):
            raise AnnotationError("every image's points must use the same classes")
        tasks["detection"] = {"num_classes": len(det_names)}
        names["detection"] = list(det_names)
        colors["detection"] = dets[0].class_colors or default_colors(len(det_names) + 1)[1:]
    labels = [i.image_class for i in images if i.image_class is not None]
    if labels:
        if len(labels) != len(images):
            raise AnnotationError("classification needs a class for every training image")
        tasks["classification"] = {"num_classes": len(labels[0].class_names)}
        names["classification"] = list(labels[0].class_names)
    if not tasks:
        raise AnnotationError("no annotations: give labels, points or image classes")
    return tasks, names, colors
