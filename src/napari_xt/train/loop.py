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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from ..engine.allocator import reuse_freed_memory
from ..engine.normalise import Normaliser
from ..engine.run import autocast_dtype, resolve_device
from ..errors import OutputError
from ..model import save_model
from ..model.xt import RegionFeatures
from .annotations import AnnotationError
from .cache import FeatureCache, cache_key, cached_features, default_root
from .data import RegionCache, TrainingImage, WindowRef, build_windows, iter_window
from .events import CancelHandle, EpochDone, StepDone, TrainEvent, TrainFinished, TrainStarted
from .losses import class_weights, detection_loss, detection_targets, segmentation_loss
from .model_setup import encoder_parameters, has_trainable_neck, make_model, resolve_freeze
from .options import TrainOptions
from .runtime import detach, freeze_batchnorm, idle_core_threads, weights_digest
from .sampling import dominant_class, epoch_order, expected_epoch_length, window_class_counts, window_objects
from .schedule import lr_schedule, param_groups
from .tasks import tasks_from_annotations
from .validation import Validation

__all__ = ["TrainOptions", "Trainer", "weights_digest"]

#: Backbones this large are gradient-checkpointed on the CPU too (``TrainOptions.checkpointing`` None).
CHECKPOINT_PARAMS = 50_000_000


class Trainer:
    """``Trainer(images, options).fit(on_progress)`` -> final metrics; ``stop()`` (or ``cancel.cancel()``) from any
    thread ends training after the current window and keeps the best checkpoint."""

    def __init__(self, images: list[TrainingImage], options: TrainOptions, cancel: CancelHandle | None = None):
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
        self.tasks, names, colors = tasks_from_annotations(images, options.class_names)
        torch.manual_seed(options.seed)  # a fresh model's weights too come from ``seed``, not from whatever ran before
        first = images[0].image
        self.model = make_model(self.tasks, names, colors, base=options.base, region_encoder=options.region_encoder,
                                context_encoder=options.context_encoder, region_size=options.region_size,
                                sub_region_size=options.sub_region_size, first_image=first,
                                pretrained=options.pretrained, context_kwargs=options.context_kwargs,
                                encoder_weights=options.encoder_weights,
                                encoder_options=options.encoder_options)
        self.freeze_note = resolve_freeze(self.model, options)
        self.checkpointing = options.checkpointing if options.checkpointing is not None else (
            self.device.type != "cpu" or encoder_parameters(self.model) >= CHECKPOINT_PARAMS)
        det_head = self.model.heads["detection"] if "detection" in self.model.heads else None  # noqa: SIM401
        self.det_stride = int(det_head.stride) if det_head is not None else 4  # 2 for a stride-2 stem map
        cfg = self.model.config
        pixel = options.pixel_size if options.pixel_size is not None else (
            cfg.pixel_size if options.level is None else None)
        self.windows = build_windows(images, region_size=cfg.region_size, window_size=options.window_size,
                                     pixel_size=pixel, level=options.level, use_mask=options.use_mask)
        self.normalisers = [Normaliser.from_config(cfg, item.image) for item in images]
        self.train_refs, self.val_refs = self.windows.split(options.val_fraction, options.seed)
        self._imbalance()
        plan0 = self.windows.plans[0]
        if first.pixel_size:  # in metres for an image in degrees: a model's pixel size is a length
            from ..engine.plan import base_pixel_size

            cfg.pixel_size = float(base_pixel_size(first) or 0.0) * plan0.downsample_to_level0
            cfg.pixel_unit = "m" if first.pixel_unit == "deg" else first.pixel_unit
        cfg.name = options.name or cfg.name or out.stem
        cfg.description = options.description or cfg.description
        self.model.to(self.device)
        self.features: list[FeatureCache] = []
        if options.mode == "quick":
            options.freeze_encoder = True
            root = options.feature_cache_dir or default_root()
            self.features = [FeatureCache(root, cache_key(self.model, item.image, plan), options.feature_cache_mb)
                             for item, plan in zip(images, self.windows.plans, strict=True)]
        elif options.mode != "full":
            raise ValueError(f"training mode must be 'full' or 'quick', not {options.mode!r}")
        self.cancel = cancel if cancel is not None else CancelHandle()
        self.cache = RegionCache(options.cache_mb)
        self.history: list[EpochDone] = []

    def stop(self) -> None:
        self.cancel.cancel()

    def _imbalance(self) -> None:
        """Annotated pixels per class and per training window (labels only): class weights, dominant class, and the
        counts that the epoch's window sampling uses."""
        o = self.options
        k = int(self.tasks["segmentation"]["num_classes"]) if "segmentation" in self.tasks else 0
        self.window_counts = (window_class_counts(self.windows, self.train_refs, k) if k
                              else np.zeros((len(self.train_refs), 0), np.int64))
        self.class_counts = self.window_counts.sum(0)
        self.dominant = dominant_class(self.window_counts) if k else -1
        self.seg_weights = None
        if k and o.class_balance:
            self.seg_weights = torch.as_tensor(class_weights(self.class_counts, o.weight_cap), dtype=torch.float32)

    def _epoch_order(self, rng: np.random.Generator) -> np.ndarray:
        o = self.options
        if o.balanced_sampling and self.window_counts.shape[1]:
            return epoch_order(self.window_counts, rng, o.max_windows)
        return rng.permutation(len(self.train_refs))[:o.max_windows or len(self.train_refs)]

    # -- one window ------------------------------------------------------------------------------------------------
    def _encode(self, x: torch.Tensor, grad: bool) -> RegionFeatures:
        model = self.model
        if not grad or (self.options.freeze_encoder and not has_trainable_neck(model)):
            with torch.no_grad():
                return model.encode_regions(x)
        if self.options.freeze_encoder:  # frozen backbone, trained pyramid: autograd records from the neck on only
            return model.encode_regions(x)
        if not self.checkpointing:
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
                              self.options.augment if augment else None, self.cache, pixels=not self.features,
                              stride=self.det_stride)
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
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            if self.features:
                feats = cached_features(chunk, self.features, self.windows, self.normalisers, model, self.device)
            else:
                feats = self._encode(torch.from_numpy(np.stack([s.pixels for s in chunk])).to(self.device), grad)
            positions = model.region_positions([s.position for s in chunk], feats.grid, self.device)
            ctx, memory = model.step_context(feats, memory, positions, batch=1)
            outs = model.decode(feats, ctx)
        return outs, ctx, memory

    def _chunk_loss(self, outs, chunk, n_chunks: int, objects: float) -> torch.Tensor:
        """Segmentation: the chunk's mean over its labelled pixels, 1/n_chunks of the window. Detection: the focal
        sum over the *window's* object count (CenterNet normalises by the batch's positives): normalising per chunk
        let a region with no object weigh as much as one with many, so with sparse objects the negatives won."""
        loss = torch.zeros((), device=self.device)
        if "segmentation" in outs:
            target = torch.from_numpy(np.stack([s.segmentation for s in chunk])).to(self.device)
            total, count = segmentation_loss(outs["segmentation"], target, self.seg_weights, self.options.dice)
            loss = loss + total / max(count, 1) / n_chunks
        if "detection" in outs:
            head = self.model.heads["detection"]
            cells = outs["detection"]["heatmap"].shape[-1]
            t = detection_targets([s.objects for s in chunk], head.num_classes, cells, head.stride, self.device)
            total, _ = detection_loss(outs["detection"], t, heat_loss=self.options.heat_loss)
            loss = loss + total / max(objects, 1.0)
        return loss

    def _train_window(self, ref, rng) -> float:
        model = self.model
        memory = model.init_memory(1, device=self.device)
        n_regions = len(self.windows.regions(ref))
        n_chunks = math.ceil(n_regions / self.options.chunk)
        objects = window_objects(self.windows, ref)
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
                loss = (self._chunk_loss(outs, chunk, n_chunks, objects) if grad
                        else torch.zeros((), device=self.device))
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
            memory = detach(memory)
        return total

    # -- validation ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, refs: Sequence[WindowRef] | None = None) -> dict:
        """Validation metrics: mIoU (segmentation), F1 (detection), accuracy (classification), and their mean.

        Every validation window (or each of ``refs``) runs as inference runs it (no augmentation, the memory carried
        over); the outputs go to a :class:`~napari_xt.train.validation.Validation` accumulator, which alone decides
        what they score."""
        model = self.model.eval()
        cfg = model.config
        metric = Validation(self.tasks, det_stride=self.det_stride, dominant=self.dominant,
                            class_names=cfg.class_names.get("segmentation"), score_threshold=cfg.score_threshold)
        for ref in self.val_refs if refs is None else refs:
            memory = model.init_memory(1, device=self.device)
            token_sum, n_tokens = torch.zeros((), device=self.device), 0
            for chunk in self._chunks(ref, None, augment=False):
                outs, ctx, memory = self._forward_chunk(chunk, memory, grad=False)
                token_sum = token_sum + ctx.reshape(-1, ctx.shape[-1]).float().sum(0)
                n_tokens += ctx.shape[0] * ctx.shape[1]
                metric.update(outs, chunk)
            label = self.windows.images[ref.image].image_class
            if label is not None:
                metric.update_image(model.classify(memory, (token_sum / max(n_tokens, 1))[None]), label.index)
        return metric.result()

    # -- the loop --------------------------------------------------------------------------------------------------
    def fit(self, on_progress: Callable[[TrainEvent], None] | None = None) -> dict:
        """Train; keeps the best checkpoint (by validation score) at ``options.out``; returns the final summary
        (``TrainFinished.to_dict()``, what ``napari-xt train --json`` prints)."""
        summary: dict = {}
        for event in self.events():
            if on_progress is not None:
                on_progress(event)
            if isinstance(event, TrainFinished):
                summary = event.to_dict()
        return summary

    def events(self) -> Iterator[TrainEvent]:
        """Train, yielding typed events (train/events.py): :class:`TrainStarted`, one :class:`StepDone` per window,
        one :class:`EpochDone` each, then :class:`TrainFinished`. A generator, so a GUI worker can relay each event
        and cancel between any two.

        On the CPU freed activations and gradients stay in the process for the next step (engine/allocator.py:
        ConvNeXt-T steps ~10-20 % faster here); the defaults come back when training ends."""
        with reuse_freed_memory(self.device.type == "cpu"), idle_core_threads(self.device.type == "cpu"):
            yield from self._events()

    def _events(self) -> Iterator[TrainEvent]:
        o, model = self.options, self.model
        rng = np.random.default_rng(o.seed)
        torch.manual_seed(o.seed)
        groups = param_groups(model, o)
        params = [p for group in groups for p in group["params"]]  # what the gradient clipping sees
        if o.freeze_encoder:
            model.region_encoder.requires_grad_(False)
            if has_trainable_neck(model):
                model.region_encoder.neck.requires_grad_(True)
        optimiser = torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)
        per_epoch = expected_epoch_length(self.window_counts, o.max_windows) if self.window_counts.shape[1] else \
            min(len(self.train_refs), o.max_windows or len(self.train_refs))
        steps = max(1, per_epoch * o.epochs)
        budget = o.time_budget_s
        t0 = time.perf_counter()
        schedule = lr_schedule(optimiser, steps=steps, per_epoch=per_epoch, warmup=o.warmup, budget=budget, t0=t0)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        start_weights = weights_digest(model)
        t_val = time.perf_counter()
        initial = self.evaluate() if self.val_refs and o.initial_validation else {}
        val_seconds = time.perf_counter() - t_val if initial else None  # None: not measured yet
        best, best_epoch, since_best, step = -math.inf, -1, 0, 0
        yield TrainStarted(
            epochs=o.epochs, steps=steps, train_windows=len(self.train_refs), val_windows=len(self.val_refs),
            initial=initial, time_budget_s=budget,
            class_weights=None if self.seg_weights is None else [round(float(v), 3) for v in self.seg_weights],
            dominant_class=self.dominant, window_size=o.window_size, base=o.base, weights=start_weights,
            note=self.freeze_note)
        for epoch in range(1, o.epochs + 1):
            model.train()
            if o.freeze_encoder:
                model.region_encoder.eval()
            elif self.pretrained_encoder:
                freeze_batchnorm(model.region_encoder)
            order = self._epoch_order(rng)
            losses: list[float] = []
            t_epoch = time.perf_counter()
            for n, idx in enumerate(order):
                window_s = (time.perf_counter() - t_epoch) / max(len(losses), 1)  # the next window and validation
                # what validation will take: as last time, or (never measured) one training window per validation
                # window (measured: no backward, but the full-resolution head dominates both)
                val_s = val_seconds if val_seconds is not None else window_s * len(self.val_refs)
                over = budget and losses and time.perf_counter() - t0 + val_s + window_s > budget
                if self.cancel.cancelled or over:
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
                eta = elapsed / step * (steps - step)
                yield StepDone(epoch=epoch, step=step, steps=steps, loss=losses[-1],
                               lr=float(schedule.get_last_lr()[0]), eta_s=min(eta, budget - elapsed) if budget else eta,
                               window=n + 1, windows=len(order))
            if not losses:
                break
            t_val = time.perf_counter()
            val = self.evaluate() if self.val_refs else {}
            val_seconds = time.perf_counter() - t_val
            score = val.get("score", float("nan")) if val else -float(np.mean(losses))
            # while validation has scored nothing right (a few regions, a young detector) it cannot tell epochs
            # apart: the later one, trained longer, replaces the earlier rather than the first being kept for good
            improved = not np.isnan(score) and (score > best or score == best == 0)
            if improved:
                best, best_epoch, since_best = score, epoch, 0
                if "score_threshold" in val:  # the detection threshold this checkpoint's F1 was measured at
                    model.config.score_threshold = self._threshold(val)
                self._save()
            elif best > 0:  # patience counts only once something was learnt: early epochs often score 0
                since_best += 1
            epoch_seconds = time.perf_counter() - t_epoch
            record = EpochDone(epoch=epoch, epochs=o.epochs, loss=float(np.mean(losses)), val=val, best=best,
                               best_epoch=best_epoch, saved=improved, seconds=time.perf_counter() - t0)
            self.history.append(record)
            yield record
            # with a budget the schedule runs over it: stop early only when validation has clearly converged (three
            # times the patience without a gain), never on the noise of a few validation windows
            if self.cancel.cancelled or since_best >= (3 * o.patience if budget else o.patience):
                break
            if budget and time.perf_counter() - t0 + 0.5 * epoch_seconds > budget:
                break  # not even half an epoch fits: stop rather than overrun the budget
        if best_epoch < 0:
            self._save()  # nothing improved on a finite score (e.g. stopped at once): keep what we have
        yield TrainFinished(
            out=str(self.out), epochs_run=len(self.history), best_epoch=best_epoch,
            best_score=None if best == -math.inf else best, initial=initial,
            final=self.history[-1].val if self.history else {}, stopped=self.cancel.cancelled,
            train_windows=len(self.train_refs), val_windows=len(self.val_refs),
            seconds=round(time.perf_counter() - t0, 2), tasks=sorted(self.tasks), base=o.base,
            class_counts=[int(v) for v in self.class_counts])

    def _threshold(self, val: dict) -> float:
        """The detection threshold to store: validation's best when it rests on enough objects
        (``calibration_objects``) and found some of them; else the best over every labelled window, training ones
        included. Those are optimistic (the model learnt from them), but the alternatives were worse: a threshold
        best on a dozen validation crowns is noise, and the default can sit above every peak a young detector makes
        (on the tree tile a detector taught on 10 regions, whose 2 validation regions found nothing, kept 0.3 and
        reported no crown where its best threshold scored F1 0.33 on unseen crowns)."""
        f1 = val.get("f1", float("nan"))
        enough = val.get("objects", 0) >= self.options.calibration_objects
        if (enough and f1 > 0) or not self.train_refs:
            return float(val["score_threshold"])
        pooled = self.evaluate([*self.train_refs, *self.val_refs])
        if pooled.get("f1", 0.0) > 0:
            return float(pooled["score_threshold"])
        return float(val["score_threshold"])

    @property
    def pretrained_encoder(self) -> bool:
        """A fresh model whose backbone came with pretrained weights (package, hub, file)."""
        return bool(self.options.pretrained or self.options.encoder_weights) and not self.options.base

    def _save(self) -> None:
        """Write the checkpoint beside ``out`` then rename: ``out`` is always a whole, loadable model."""
        tmp = self.out.with_name(f".{self.out.stem}.partial.safetensors")
        was_training = self.model.training
        save_model(self.model, tmp)
        os.replace(tmp, self.out)
        self.model.train(was_training)

