"""Imbalanced labels: class weights from annotated pixels only, a rare class that plain cross entropy never predicts
but the balanced loss does, rare windows in every epoch, and a validation report that names unpredicted classes."""

from __future__ import annotations

import numpy as np
import torch

from napari_xt.io import array_image
from napari_xt.train import IGNORE, SegmentationLabels, Trainer, TrainingImage, TrainOptions
from napari_xt.train.losses import (
    SegmentationMetric,
    class_weights,
    label_counts,
    segmentation_loss,
    segmentation_report,
)
from napari_xt.train.sampling import epoch_order, repeat_factors


def test_class_weights_count_annotated_pixels_only():
    target = np.full((10, 10), IGNORE)
    target[0, :8] = 0  # 8 px of class 0
    target[1, :2] = 1  # 2 px of class 1; 90 px unlabelled must not count as class 0 (or anything)
    counts = label_counts(target, 3)
    assert counts.tolist() == [8, 2, 0]
    assert class_weights(counts).tolist() == [1.0, 4.0, 1.0]
    assert class_weights([1000, 1, 0], cap=10).tolist() == [1.0, 10.0, 1.0]  # capped


def _toy():
    """One grey feature per pixel; the rare class (0.5 %) is brighter by 2 sigma. Bayes-optimal plain CE predicts
    it nowhere (the posterior stays below 0.5 everywhere but in a far tail), which is exactly the failure we fix."""
    g = torch.Generator().manual_seed(0)
    target = (torch.rand(6, 48, 48, generator=g) < 0.005).long()
    x = torch.randn(6, 1, 48, 48, generator=g) + 2.0 * target[:, None].float()
    sparse = target.clone()
    sparse[:, :, :6] = IGNORE  # some pixels not annotated, as with painted strokes
    return x, target, sparse


def _fit(x, sparse, weights, dice):
    torch.manual_seed(0)
    model = torch.nn.Conv2d(1, 2, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread takes 0.2 s where two spin for 9 s
    try:
        for _ in range(150):
            opt.zero_grad()
            loss, count = segmentation_loss(model(x), sparse, weights, dice)
            (loss / count).backward()
            opt.step()
        with torch.no_grad():
            return model(x).argmax(1)
    finally:
        torch.set_num_threads(threads)


def test_plain_cross_entropy_never_predicts_the_rare_class_and_the_balanced_loss_does():
    x, target, sparse = _toy()
    rare = target == 1
    plain = _fit(x, sparse, None, 0.0)
    assert int((plain == 1).sum()) == 0  # the old loss: "everything is sea"
    weights = torch.as_tensor(class_weights(label_counts(sparse.numpy(), 2)), dtype=torch.float32)
    balanced = _fit(x, sparse, weights, 1.0)
    recall = float((balanced[rare] == 1).float().mean())
    assert recall > 0.2, recall
    assert int((balanced == 1).sum()) < 0.05 * balanced.numel()  # not "everything is ship" either


def test_balanced_loss_ignores_unlabelled_pixels_and_gives_the_rare_class_a_gradient():
    torch.manual_seed(0)
    logits = torch.randn(1, 2, 16, 16, requires_grad=True)
    target = torch.zeros(1, 16, 16, dtype=torch.long)
    target[0, 3, 3] = 1
    target[:, :, 8:] = IGNORE
    weights = torch.tensor([1.0, 10.0])
    loss, count = segmentation_loss(logits, target, weights, dice=1.0)
    assert count == 16 * 8
    other = logits.detach().clone()
    other[..., 8:] = 100.0
    assert torch.equal(segmentation_loss(other, target, weights, dice=1.0)[0], loss)
    loss.backward()
    assert torch.all(logits.grad[..., 8:] == 0)
    assert float(logits.grad[0, 1, 3, 3]) < 0  # pushes the rare pixel's class-1 logit up


def test_rare_windows_are_in_every_epoch_even_with_a_window_limit():
    counts = np.zeros((40, 2), np.int64)
    counts[:, 0] = 1000
    counts[[5, 17], 1] = 3  # 2 windows of 40 hold the rare class
    factors = repeat_factors(counts)
    assert factors[5] == factors[17] > 1 and factors[0] == 1
    rng = np.random.default_rng(0)
    for _ in range(20):
        order = epoch_order(counts, rng, max_windows=4)
        assert len(order) == 4 and ({5, 17} & set(order.tolist()))
        full = epoch_order(counts, rng)
        assert set(full.tolist()) == set(range(40))  # no window is ever dropped
    assert np.mean([len(epoch_order(counts, rng)) for _ in range(50)]) > 41  # rare windows repeated


def test_report_names_a_class_never_predicted_and_scores_without_the_dominant_class():
    metric = SegmentationMetric(2)
    target = np.zeros((20, 20), np.int64)
    target[:2, :2] = 1
    metric.update(np.zeros_like(target), target)  # "everything is sea"
    report = segmentation_report(metric, dominant=0, names=["sea", "ship"])
    assert report["never_predicted"] == ["ship"]
    assert report["miou"] > 0.45 and report["minority_iou"] == 0.0
    assert report["predicted_px"] == [400, 0] and report["class_f1"][1] == 0.0


def test_trainer_weights_classes_from_the_training_windows(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    labels = np.zeros((256, 256), np.int64)  # 0 = not painted
    labels[:, :100] = 1
    labels[10:14, 10:14] = 2
    seg = SegmentationLabels.from_array(labels, (256, 256), ignore=0)
    opts = TrainOptions(out=str(tmp_path / "m.safetensors"), epochs=1, region_size=64, window_size=2,
                        val_fraction=0, use_mask=False, context_kwargs={"hidden": 32})
    trainer = Trainer([TrainingImage(array_image(pixels), segmentation=seg)], opts)
    assert trainer.class_counts.tolist() == [0, 256 * 100 - 16, 16]
    assert trainer.dominant == 1
    assert trainer.seg_weights is not None and trainer.seg_weights.tolist() == [1.0, 1.0, 10.0]
