"""The trainer learns, ignores what was not annotated, bounds memory by construction, and writes usable models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_xt.errors import OutputError
from napari_xt.io import array_image
from napari_xt.model import load_model
from napari_xt.synthetic import TissueSample
from napari_xt.synthetic.image import synthetic_image
from napari_xt.train import (
    IGNORE,
    Augment,
    DetectionAnnotations,
    SegmentationLabels,
    Trainer,
    TrainingImage,
    TrainOptions,
)
from napari_xt.train.events import EpochDone
from napari_xt.train.losses import detection_loss, detection_targets, segmentation_loss

SMALL_CONTEXT = {"hidden": 64}


def tissue_item(size=2048, seed=1):
    sample = TissueSample(size, size, seed=seed)
    image = synthetic_image(sample)
    labels = SegmentationLabels.from_array(sample.label_levels, image.levels[0].shape[:2], ignore=255,
                                           class_names=sample.class_names, class_colors=sample.class_colors)
    return TrainingImage(image, segmentation=labels)


def blob_image(seed, n=40, size=1024):
    """Dark discs on a pale noisy background, with their centres and diameters (a detection task)."""
    rng = np.random.default_rng(seed)
    img = rng.normal(215, 8, (size, size, 3))
    yy, xx = np.mgrid[0:size, 0:size]
    ys, xs = rng.uniform(20, size - 20, n), rng.uniform(20, size - 20, n)
    radii = rng.uniform(5, 9, n)
    for y, x, r in zip(ys, xs, radii, strict=True):
        img[(yy - y) ** 2 + (xx - x) ** 2 < r * r] = (90, 50, 140)
    return np.clip(img, 0, 255).astype(np.uint8), ys, xs, 2 * radii


def test_segmentation_learns_on_synthetic_tissue(tmp_path):
    out = tmp_path / "seg.safetensors"
    opts = TrainOptions(out=str(out), epochs=3, pixel_size=1.0, window_size=2, context_kwargs=SMALL_CONTEXT)
    summary = Trainer([tissue_item()], opts).fit()
    assert summary["val_windows"] >= 1
    before, after = summary["initial"]["miou"], summary["final"]["miou"]
    assert after > before + 0.2, (before, after)
    model = load_model(out)
    cfg = model.config
    assert cfg.class_names["segmentation"] == ["background", "stroma", "nucleus", "gland"]
    assert cfg.class_colors["segmentation"][1] == [236, 164, 200]
    assert cfg.pixel_size == pytest.approx(1.0)
    assert cfg.heads == {"segmentation": {"num_classes": 4}}


def test_detection_learns_on_blobs(tmp_path):
    items = []
    for seed in range(2):
        pixels, ys, xs, d = blob_image(seed)
        items.append(TrainingImage(array_image(pixels), detection=DetectionAnnotations(ys, xs, d, d, 0, ["blob"])))
    opts = TrainOptions(out=str(tmp_path / "det.safetensors"), epochs=4, window_size=2, use_mask=False,
                        context_kwargs=SMALL_CONTEXT, val_fraction=0.25)
    summary = Trainer(items, opts).fit()
    assert summary["final"]["f1"] > summary["initial"]["f1"] + 0.5, summary
    assert load_model(tmp_path / "det.safetensors").config.class_names["detection"] == ["blob"]


def test_unlabelled_pixels_do_not_change_the_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 16, 16, requires_grad=True)
    target = torch.randint(0, 3, (2, 16, 16))
    target[:, :, :8] = IGNORE  # left half not annotated
    loss, count = segmentation_loss(logits, target)
    assert count == 2 * 16 * 8
    other = logits.detach().clone()
    other[:, :, :, :8] = torch.randn(2, 3, 16, 8) * 10  # anything at all where nothing was annotated
    loss2, _ = segmentation_loss(other, target)
    assert torch.equal(loss, loss2)
    loss.backward()
    assert torch.all(logits.grad[:, :, :, :8] == 0) and torch.any(logits.grad[:, :, :, 8:] != 0)
    # the counterfactual (unlabelled treated as background) is a different loss: the test could fail
    dense = target.clone()
    dense[dense == IGNORE] = 0
    assert not torch.equal(segmentation_loss(other, dense)[0], loss2)


def test_detection_cells_outside_the_annotated_area_do_not_change_the_loss():
    valid = np.zeros((16, 16), bool)
    valid[:, :8] = True
    obj = {"y": np.array([20.0]), "x": np.array([12.0]), "h": np.array([8.0]), "w": np.array([8.0]),
           "cls": np.array([0]), "valid": valid}
    t = detection_targets([obj], 1, 16, 4, "cpu")
    torch.manual_seed(0)
    out = {"heatmap": torch.randn(1, 1, 16, 16), "size": torch.randn(1, 2, 16, 16), "offset": torch.rand(1, 2, 16, 16)}
    loss, n = detection_loss(out, t)
    assert n == 1
    changed = {k: v.clone() for k, v in out.items()}
    changed["heatmap"][..., 8:] = 50.0  # confident "objects" where nobody looked
    assert torch.equal(detection_loss(changed, t)[0], loss)
    changed["heatmap"][..., :8] += 1.0
    assert not torch.equal(detection_loss(changed, t)[0], loss)


def test_sparse_annotation_trains_only_where_painted(tmp_path):
    """A few painted strokes (napari convention: 0 = not painted) are enough to build windows and train."""
    item = tissue_item(1536, seed=2)
    truth = np.asarray(item.segmentation.levels[0])
    painted = np.zeros_like(truth)
    painted[200:260, :] = truth[200:260, :] + 1  # one painted band, classes shifted so 0 stays 'not painted'
    labels = SegmentationLabels.from_array(painted, truth.shape, ignore=0)
    assert labels.num_classes() == int(truth[200:260].max()) + 2
    trainer = Trainer([TrainingImage(item.image, segmentation=labels)],
                      TrainOptions(out=str(tmp_path / "s.safetensors"), epochs=1, window_size=2, pixel_size=1.0,
                                   val_fraction=0, context_kwargs=SMALL_CONTEXT))
    rows = {trainer.windows.plans[0].regions[i].row for ref in trainer.train_refs
            for i in trainer.windows.plans[0].windows[ref.window]}
    assert rows and min(rows) == 0  # only the windows covering the painted band (rows 0-1 at 1 µm)
    assert all(r < 2 for r in rows)
    summary = trainer.fit()
    assert summary["epochs_run"] == 1 and (tmp_path / "s.safetensors").is_file()


def test_frozen_encoder_keeps_its_weights_and_base_heads_are_resized(tmp_path):
    base = load_model("tiny-hyper-seg")  # 3 classes; the annotations have 4
    before = {k: v.clone() for k, v in base.state_dict().items()}
    opts = TrainOptions(out=str(tmp_path / "f.safetensors"), base="tiny-hyper-seg", epochs=1, pixel_size=1.0,
                        freeze_encoder=True, val_fraction=0)
    trainer = Trainer([tissue_item(1024)], opts)
    # a preset is random init: compare against the trainer's own starting weights
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert trainer.model.config.heads["segmentation"]["num_classes"] == 4
    assert before["context_encoder.input_proj.weight"].shape == start["context_encoder.input_proj.weight"].shape
    trainer.fit()
    after = trainer.model.state_dict()
    enc = [k for k in after if k.startswith("region_encoder.") and after[k].is_floating_point()]
    ctx = [k for k in after if k.startswith("context_encoder.") and after[k].dtype.is_floating_point]
    assert all(torch.equal(after[k], start[k]) for k in enc)
    assert any(not torch.equal(after[k], start[k]) for k in ctx)


def test_stop_keeps_a_whole_checkpoint(tmp_path):
    out = tmp_path / "stopped.safetensors"
    trainer = Trainer([tissue_item(1024)], TrainOptions(out=str(out), epochs=50, pixel_size=1.0, val_fraction=0.3,
                                                        context_kwargs=SMALL_CONTEXT))
    seen = []

    def on_progress(event):
        seen.append(type(event).__name__)
        if isinstance(event, EpochDone):
            trainer.stop()

    summary = trainer.fit(on_progress)
    assert summary["stopped"] and summary["epochs_run"] == 1
    assert seen[0] == "TrainStarted" and seen[-1] == "TrainFinished"
    assert load_model(out).config.heads["segmentation"]["num_classes"] == 4
    assert not list(tmp_path.glob(".*partial*"))


def test_out_must_not_be_overwritten_silently(tmp_path):
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputError):
        Trainer([tissue_item(512)], TrainOptions(out=str(out)))
    assert out.read_bytes() == b"keep me"


def test_augmentation_moves_regions_with_their_pixels(tmp_path):
    """Flips/rotations are applied to the window as a whole: a region's position moves with its content."""
    from napari_xt.train.data import dihedral, dihedral_points

    grid = np.arange(16).reshape(4, 4)
    for k in range(4):
        for flip in (False, True):
            moved = dihedral(grid, k, flip)
            y, x = np.nonzero(moved == 6)  # element originally at (1, 2) -> pixel centre (1.5, 2.5)
            ny, nx, _, _ = dihedral_points(np.array([1.5]), np.array([2.5]), np.ones(1), np.ones(1), 4, k, flip)
            assert (ny[0], nx[0]) == (y[0] + 0.5, x[0] + 0.5)
    trainer = Trainer([tissue_item(1024)], TrainOptions(out=str(tmp_path / "a.safetensors"), pixel_size=1.0,
                                                        augment=Augment(), val_fraction=0))
    from napari_xt.train.data import iter_window

    ref = trainer.train_refs[0]
    plain = {s.region_id: s for s in iter_window(trainer.windows, ref, trainer.normalisers[0], None, None)}
    rng = np.random.default_rng(3)
    for s in iter_window(trainer.windows, ref, trainer.normalisers[0], rng, Augment(colour=0, translate=False)):
        src = plain[s.region_id]
        matches = [(k, f) for k in range(4) for f in (False, True)
                   if np.array_equal(dihedral(src.segmentation, k, f), s.segmentation)]
        assert matches, "labels must be a flip/rotation of the region's own labels"


def test_train_cli_end_to_end(tmp_path, capsys):
    from napari_xt.cli import main
    from napari_xt.cli._sample import _LabelPyramid
    from napari_xt.synthetic.export import write_ome_tiff

    sample = TissueSample(1024, 1024, seed=4)
    write_ome_tiff(sample, tmp_path / "img.ome.tif")
    write_ome_tiff(_LabelPyramid(sample), tmp_path / "lbl.ome.tif")
    out = tmp_path / "cli.safetensors"
    args = ["train", "--image", str(tmp_path / "img.ome.tif"), "--labels", str(tmp_path / "lbl.ome.tif"),
            "--ignore-label", "255", "--class-names", "background,stroma,nucleus,gland", "--mpp", "1.0",
            "--epochs", "1", "--context-options", '{"hidden": 64}', "--out", str(out), "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["out"] == str(out) and summary["tasks"] == ["segmentation"]
    assert main(args) == 1  # exists, no --overwrite
    assert "exists" in capsys.readouterr().err
    bad = ["train", "--image", str(tmp_path / "img.ome.tif"), "--out", str(tmp_path / "x.safetensors")]
    assert main(bad) == 1
    assert "give annotations" in capsys.readouterr().err
    # the trained model runs through the engine like any other checkpoint
    assert main(["predict", str(tmp_path / "img.ome.tif"), "--model", str(out), "--out", str(tmp_path / "s.zarr"),
                 "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert pred["regions_done"] == pred["regions_total"] > 0


def test_frozen_vit_keeps_its_backbone_and_trains_its_pyramid(tmp_path):
    """A plain ViT's feature pyramid starts random: "freeze the encoder" must freeze the backbone, not the pyramid."""
    from napari_xt.model import XTConfig, build_model, save_model

    torch.manual_seed(0)
    cfg = XTConfig(region_encoder="timm:vit_small_patch16_224",
                   region_encoder_kwargs={"depth": 2, "embed_dim": 32, "num_heads": 2}, region_size=256,
                   sub_region_size=128, context_encoder="none", heads={"segmentation": {"num_classes": 4}},
                   class_names={"segmentation": ["background", "stroma", "nucleus", "gland"]})
    base = save_model(build_model(cfg, pretrained=False), tmp_path / "vit.safetensors")
    opts = TrainOptions(out=str(tmp_path / "f.safetensors"), base=str(base), epochs=1, pixel_size=1.0,
                        freeze_encoder=True, val_fraction=0, max_windows=2)
    trainer = Trainer([tissue_item(1024)], opts)
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    after = trainer.model.state_dict()
    floats = [k for k in after if after[k].is_floating_point()]
    backbone = [k for k in floats if k.startswith("region_encoder.model.")]
    neck = [k for k in floats if k.startswith("region_encoder.neck.")]
    assert backbone and neck
    assert all(torch.equal(after[k], start[k]) for k in backbone)
    assert any(not torch.equal(after[k], start[k]) for k in neck)


def _empty_but_annotated(size=512, seed=5):
    """A pale, empty image annotated as holding no object: no detector can score F1 > 0 there."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(215, 8, (size, size, 3)), 0, 255).astype(np.uint8)
    return TrainingImage(array_image(pixels), detection=DetectionAnnotations([], [], 14.0, 14.0, 0, ["blob"]))


def test_a_detector_whose_validation_finds_nothing_keeps_its_last_epoch_and_a_threshold_from_every_window(tmp_path):
    pixels, ys, xs, d = blob_image(0)
    items = [TrainingImage(array_image(pixels), detection=DetectionAnnotations(ys, xs, d, d, 0, ["blob"])),
             _empty_but_annotated()]

    def options(seed):
        return TrainOptions(out=str(tmp_path / "det.safetensors"), epochs=3, window_size=2, use_mask=False,
                            context_kwargs=SMALL_CONTEXT, val_fraction=0.2, seed=seed, initial_validation=False)

    # the seed whose one validation window is the blank image's (the split is a fixed hash of seed, image, window)
    probe = Trainer(items, options(0))
    seed = next(s for s in range(64) if [r.image for r in probe.windows.split(0.2, s)[1]] == [1])
    trainer = Trainer(items, options(seed))
    epochs = []
    summary = trainer.fit(lambda e: epochs.append(e) if isinstance(e, EpochDone) else None)
    assert [e.val["f1"] for e in epochs] == [0.0, 0.0, 0.0]
    assert all(e.saved for e in epochs) and summary["best_epoch"] == epochs[-1].epoch == 3  # not epoch 1 kept for good
    on_all = trainer.evaluate([*trainer.train_refs, *trainer.val_refs])
    assert on_all["f1"] > 0.5
    stored = load_model(tmp_path / "det.safetensors").config.score_threshold
    assert stored == pytest.approx(on_all["score_threshold"])
    # a validation that found some of enough objects keeps its own threshold; on too few, every window calibrates
    assert trainer._threshold({"f1": 0.4, "objects": 50, "score_threshold": 0.123}) == 0.123
    assert trainer._threshold({"f1": 0.4, "objects": 49, "score_threshold": 0.123}) == pytest.approx(
        on_all["score_threshold"])
    trainer.options.calibration_objects = 0  # validation alone, whatever it holds
    assert trainer._threshold({"f1": 0.4, "objects": 3, "score_threshold": 0.123}) == 0.123
