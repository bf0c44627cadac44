"""What a training run is asked to do (``TrainOptions``): one plain dataclass for ``napari-xt train`` and the tab.

Kept apart from the loop so the fields (and their defaults, which docs/train.md describes) read in one place, and
torch-free (nothing here imports more than the standard library) so the CLI's parser and the dock's Fine-tune tab
build options on a thread that must never wait for torch to load.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Region encoders with at least this many backbone parameters are frozen by default when fine-tuning: a ViT-L/H
#: (300-630 M) fine-tuned end to end on a few annotated regions overfits and needs several times the GPU memory
#: (gradients + AdamW state); ViT-B (86 M) and the Swin/ConvNeXt/tiny encoders stay trainable. Here, not with the
#: model setup that applies it, so ``napari-xt train --help`` can say it without importing torch.
LARGE_ENCODER_PARAMS = 150_000_000


@dataclass
class Augment:
    """Augmentation switches; geometric flips/rotations, colour jitter (brightfield) and extra speckle (SAR)."""

    geometric: bool = True
    translate: bool = True  # move the window by up to half a region (pixels, labels, objects alike)
    colour: float = 0.08  # max relative gain change per channel (brightfield/fluorescence)
    speckle_looks: float = 12.0  # extra multiplicative speckle on dB data (SAR); 0 disables


@dataclass
class TrainOptions:
    """Everything ``napari-xt train`` and the Fine-tune tab can set (see docs/train.md)."""

    out: str
    base: str | None = None  # checkpoint / preset to start from; None: a fresh model
    region_encoder: str = "tiny"
    encoder_options: dict = field(default_factory=dict)  # builder options; they travel in the checkpoint
    context_encoder: str = "hyper"
    context_kwargs: dict = field(default_factory=dict)
    region_size: int | None = None
    sub_region_size: int | None = None
    pixel_size: float | None = None  # analysis px size; None: the base's, else level 0 (or ``level``)
    level: int | None = None
    window_size: int = 2
    epochs: int = 10  # at most this many; with ``time_budget_s`` training also ends when the budget is spent
    time_budget_s: float | None = None  # wall-clock budget: the LR schedule runs over it, the last epoch fits in it
    lr: float = 2e-3
    encoder_lr_scale: float = 0.1  # a pretrained region encoder's backbone learns at this share of ``lr``
    weight_decay: float = 0.05
    warmup: float = 0.05  # fraction of all steps
    grad_clip: float = 1.0
    freeze_encoder: bool | None = None  # None: frozen for large encoders (model_setup.default_freeze) and Quick
    #: gradient checkpointing per region: None decides (on for a GPU or a backbone of 50 M parameters or more; off for
    #: small backbones on the CPU, where recomputing made EfficientNet-Lite0 steps 4-10x slower for no memory need)
    checkpointing: bool | None = None
    chunk: int = 1  # regions per backward chunk
    grad_fraction: float = 1.0  # share of chunks that get gradients (others only advance the memory)
    val_fraction: float = 0.2
    #: a detection threshold is calibrated on every labelled window (training and validation) while the validation
    #: windows hold fewer annotated objects than this: the best threshold on a dozen objects is noise (0: always on
    #: validation alone)
    calibration_objects: int = 50
    initial_validation: bool = True  # score the untrained model first (a baseline; the tab's Quick loop skips it)
    patience: int = 5  # epochs without validation improvement (once the score is above 0) before stopping
    class_balance: bool = True  # CE weighted by capped inverse class frequency of the annotated pixels
    weight_cap: float = 10.0
    heat_loss: str = "quality"  # detection heat-map objective: "quality" (focal on the Gaussian) or "centernet"
    dice: float = 1.0  # weight of the soft Dice term (0: cross entropy only)
    balanced_sampling: bool = True  # windows holding rare classes repeated (every class seen every epoch)
    mode: str = "full"  # "full": end to end; "quick": frozen encoder over an on-disk feature cache (train/cache.py)
    feature_cache_dir: str | None = None  # Quick mode's cache folder (default: napari-xt's user cache)
    feature_cache_mb: float = 4096.0
    max_windows: int | None = None  # training windows per epoch (random subset)
    device: str = "auto"
    precision: str = "auto"  # bf16 autocast on a CUDA GPU that supports it, fp32 on the CPU
    seed: int = 0
    augment: Augment = field(default_factory=Augment)
    cache_mb: float = 1024.0
    use_mask: bool = True
    overwrite: bool = False
    pretrained: bool = False
    encoder_weights: str | None = None  # a fresh model's region-encoder weights file (implies pretrained)
    class_names: list[str] | None = None  # segmentation class names (else from the labels)
    name: str = ""
    description: str = ""


