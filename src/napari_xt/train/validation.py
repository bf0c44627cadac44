"""Validation of a training run: every validation window streamed through the model as inference would run it.

Per-class IoU/F1 (segmentation, with the dominant class left out of the score so "everything is sea" cannot look
like progress), detection F1 at the score threshold that is best on these windows (the threshold a saved checkpoint
carries: a fixed 0.3 scored F1 0 on real trees whose peaks had not yet risen that high) and image-class accuracy;
``score`` is their mean, what early stopping and the best checkpoint follow. Apart from the loop so what "better"
means is read in one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..model.heads import decode_detections
from .losses import DetectionMetric, SegmentationMetric, segmentation_report

#: Validation decodes every peak scoring at least this, so the best threshold can be chosen among them.
CALIBRATION_FLOOR = 0.02

if TYPE_CHECKING:
    from .loop import Trainer


@torch.no_grad()
def evaluate(trainer: Trainer) -> dict:
    """Validation metrics: mIoU (segmentation), F1 (detection), accuracy (classification), and their mean."""
    model = trainer.model.eval()
    seg = SegmentationMetric(trainer.tasks["segmentation"]["num_classes"]) if "segmentation" in trainer.tasks else None
    head = trainer.model.heads["detection"] if "detection" in trainer.tasks else None
    det = DetectionMetric(stride=trainer.det_stride) if head is not None else None
    correct = seen = 0
    for ref in trainer.val_refs:
        memory = model.init_memory(1, device=trainer.device)
        token_sum, n_tokens = torch.zeros((), device=trainer.device), 0
        for chunk in trainer._chunks(ref, None, augment=False):
            outs, ctx, memory = trainer._forward_chunk(chunk, memory, grad=False)
            token_sum = token_sum + ctx.reshape(-1, ctx.shape[-1]).float().sum(0)
            n_tokens += ctx.shape[0] * ctx.shape[1]
            for j, s in enumerate(chunk):
                if seg is not None:
                    seg.update(outs["segmentation"][j].argmax(0).cpu().numpy(), s.segmentation)
                if det is not None:
                    pred = decode_detections(outs["detection"], j, score_threshold=CALIBRATION_FLOOR,
                                             stride=trainer.det_stride)
                    det.update(pred, s.objects)
        label = trainer.windows.images[ref.image].image_class
        if label is not None:
            logits = model.classify(memory, (token_sum / max(n_tokens, 1))[None])
            correct += int(int(logits.argmax(-1)) == label.index)
            seen += 1
    out: dict[str, Any] = {}
    if seg is not None:
        out.update(segmentation_report(seg, trainer.dominant, trainer.model.config.class_names.get("segmentation")))
    if det is not None:  # F1 at the threshold that is best on these windows: the one the checkpoint will carry
        out["f1"], out["score_threshold"] = det.best()
        tp, fp, fn = det.counts(out["score_threshold"])
        out["precision"] = tp / max(tp + fp, 1)
        out["recall"] = tp / max(tp + fn, 1)
    if seen:
        out["accuracy"] = correct / seen
    scores = [v for k, v in out.items() if k in ("minority_iou", "f1", "accuracy") and not np.isnan(v)]
    out["score"] = float(np.mean(scores)) if scores else float("nan")
    return out
