"""Label pyramids as OME-Zarr (NGFF ``multiscales`` + ``image-label``), copied chunk by chunk.

A standalone export is NGFF 0.5 on zarr v3: the installed ome-zarr-py (0.18) reads 0.5 as its current format, and
the result store is zarr v3 already. Written *into* an existing image, the labels follow that image's own format
(0.4 on zarr v2 with "/" chunk keys, or 0.5 on zarr v3), take its axes without ``c`` (as ome-zarr-py writes
labels) and get as many levels as the image has, because validators (ome-zarr-models) require the label pyramid to
match the image's; levels past the store's coarsest are strided further, like the store's own levels.
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import zarr

from ._common import (
    ExportError,
    check_complete,
    check_out,
    open_store,
    pixel_size,
    provenance,
    segmentation_classes,
    written_aside,
)

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def export_ome_zarr_labels(store, out=None, *, name: str = "xt", into=None, overwrite: bool = False,
                           partial: bool = False) -> Path:
    """Write the store's label pyramid as OME-Zarr labels; returns the label group written.

    ``out``: a new standalone label image (``X.ome.zarr``). ``into``: an existing OME-Zarr image whose
    ``labels/<name>`` receives the labels (its level-0 y/x shape must be the store's image shape).
    """
    store = open_store(store)
    if not _NAME.match(name):
        raise ExportError(f"label name {name!r} must be a plain folder name (letters, digits, '_', '-', '.').")
    if not store.labels:
        raise ExportError(f"store {store.path} has no label map (the model has no segmentation head), so there is "
                          "nothing to write as OME-Zarr labels.")
    if into is None and out is None:
        raise ExportError("export_ome_zarr_labels needs out (a new .ome.zarr) or into (an existing OME-Zarr image).")
    if into is not None:
        if out is not None and Path(out).resolve() != Path(into).resolve():
            raise ExportError(f"give either out ({out}) or into ({into}), not both.")
        return _into_image(store, Path(into), name, overwrite, partial)
    is_partial = check_complete(store, partial)
    out = check_out(out, overwrite, "OME-Zarr output")
    f = float(store.spec.downsample_to_level0)
    size = pixel_size(store)
    (py, px), unit = (size[0], size[1]) if size else ((1.0, 1.0), None)
    axes = [{"name": a, "type": "space", **({"unit": unit} if unit else {})} for a in ("y", "x")]
    scales = [[py * f * 2**k, px * f * 2**k] for k in range(len(store.labels))]
    shift = [py * (f - 1) / 2, px * (f - 1) / 2]
    attrs = label_attrs("0.5", name, axes, scales, [shift] * len(scales), *segmentation_classes(store))
    attrs["napari_xt"] = provenance(store, is_partial)
    with written_aside(out) as tmp:
        group = zarr.open_group(str(tmp), mode="w-", zarr_format=3)
        for k, level in enumerate(store.labels):
            dst = _create(group, str(k), level.shape, level.chunks, level.dtype, 3, ["y", "x"])
            copy_blocks(level, dst)
        group.attrs.update(attrs)
    return out


def label_attrs(version: str, name: str, axes: list[dict], scales: list[list[float]],
                translations: list[list[float]], class_names: list[str], class_colors: list[list[int]],
                source: str | None = None) -> dict:
    """Group attributes of a label image in NGFF ``version`` ("0.4": top level, "0.5": under ``ome``)."""
    datasets = []
    for k, (scale, shift) in enumerate(zip(scales, translations, strict=True)):
        transforms = [{"type": "scale", "scale": [float(v) for v in scale]}]
        if any(v != 0 for v in shift):
            transforms.append({"type": "translation", "translation": [float(v) for v in shift]})
        datasets.append({"path": str(k), "coordinateTransformations": transforms})
    multiscale = {"name": name, "axes": axes, "datasets": datasets}
    label: dict = {"version": version}
    if class_names:
        # class 0 is background: transparent, as napari draws it anyway
        label["colors"] = [{"label-value": i, "rgba": [*map(int, rgb[:3]), 0 if i == 0 else 255]}
                           for i, rgb in enumerate(class_colors)]
        label["properties"] = [{"label-value": i, "class": str(n)} for i, n in enumerate(class_names)]
    if source is not None:
        label["source"] = {"image": source}
    if version == "0.4":
        return {"multiscales": [{"version": "0.4", **multiscale}], "image-label": label}
    return {"ome": {"version": version, "multiscales": [multiscale], "image-label": label}}


def copy_blocks(src, dst) -> int:
    """Copy ``src`` (zarr, dask or numpy; its dims are the last dims of ``dst``) one ``dst`` chunk at a time.

    Blocks that are all zero are skipped (zero is the fill value), so empty tissue costs neither time nor disk.
    Returns the number of blocks written.
    """
    nd = len(src.shape)
    lead = (0,) * (len(dst.shape) - nd)
    chunks = dst.chunks[-nd:]
    written = 0
    ranges = [range(0, n, c) for n, c in zip(src.shape, chunks, strict=True)]
    for starts in itertools.product(*ranges):
        sl = tuple(slice(s, min(s + c, n)) for s, c, n in zip(starts, chunks, src.shape, strict=True))
        block = np.asarray(src[sl])
        if block.any():
            dst[lead + sl] = block
            written += 1
    return written


class Strided:
    """Every ``step``-th pixel of a 2-D level (the store's own rule for coarser levels), read block by block."""

    def __init__(self, level, step: int):
        self.level, self.step = level, int(step)
        self.shape = tuple(-(-n // self.step) for n in level.shape)
        self.dtype = level.dtype

    def __getitem__(self, sl):
        s = self.step
        return self.level[tuple(slice(a.start * s, (a.stop - 1) * s + 1, s) for a in sl)]


def _create(group, path: str, shape, chunks, dtype, zarr_format: int, dims: list[str]):
    kwargs = {"dimension_names": dims} if zarr_format == 3 else {"chunk_key_encoding": {"name": "v2",
                                                                                        "separator": "/"}}
    return group.create_array(path, shape=tuple(shape), chunks=tuple(chunks), dtype=dtype, fill_value=0, **kwargs)


# -- into an existing image -------------------------------------------------------------------------------------
def _image_multiscale(image: Path) -> tuple[zarr.Group, Literal[2, 3], dict[str, Any]]:
    try:
        group = zarr.open_group(str(image), mode="r")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ExportError(f"{image} is not a readable OME-Zarr image ({type(err).__name__}: {err}).") from None
    fmt = group.metadata.zarr_format
    attrs: dict[str, Any] = dict(group.attrs)
    ome: dict[str, Any] = attrs.get("ome", attrs) if fmt == 3 else attrs
    multiscales = ome.get("multiscales") or []
    if not multiscales:
        raise ExportError(f"{image} has no OME-Zarr 'multiscales' metadata, so labels cannot be added to it.")
    return group, fmt, multiscales[0]


def _into_image(store, image: Path, name: str, overwrite: bool, partial: bool) -> Path:
    image = image.absolute()
    group, fmt, ms = _image_multiscale(image)
    axes = [a if isinstance(a, dict) else {"name": str(a)} for a in ms.get("axes") or []]
    names = [a["name"] for a in axes]
    if "y" not in names or "x" not in names:
        raise ExportError(f"{image}: its axes {names} have no y and x, so 2-D labels cannot be placed on it.")
    datasets = ms["datasets"]
    level0 = cast(zarr.Array, group[datasets[0]["path"]])
    h, w = level0.shape[names.index("y")], level0.shape[names.index("x")]
    _check_shape(store, image, (h, w))
    is_partial = check_complete(store, partial)
    labels_dir = image / "labels"
    target = labels_dir / name
    if target.exists() and not overwrite:
        raise ExportError(f"{image} already has labels/{name}; choose another name or pass overwrite=True "
                          "(--overwrite).")

    keep = [i for i, a in enumerate(names) if a != "c"]  # ome-zarr-py writes labels without the channel axis
    label_axes = [axes[i] for i in keep]
    scale0, shift0 = _level0_transform(datasets[0], len(names))
    f = float(store.spec.downsample_to_level0)
    n_levels = len(datasets)
    scales, shifts = [], []
    for k in range(n_levels):
        scales.append([scale0[i] * (f * 2**k if names[i] in "yx" else 1.0) for i in keep])
        shifts.append([shift0[i] + (scale0[i] * (f - 1) / 2 if names[i] in "yx" else 0.0) for i in keep])
    version = "0.4" if fmt == 2 else "0.5"
    attrs = label_attrs(version, name, label_axes, scales, shifts, *segmentation_classes(store), source="../../")
    attrs["napari_xt"] = provenance(store, is_partial)

    labels_group = zarr.open_group(str(labels_dir), mode="a", zarr_format=fmt)
    with written_aside(target) as tmp:
        out = zarr.open_group(str(tmp), mode="w-", zarr_format=fmt)
        chunk = store.labels[0].chunks
        for k in range(n_levels):
            src = _store_level(store, k)
            shape = [1] * len(keep)
            shape[-2:] = src.shape
            chunks = [1] * len(keep)
            chunks[-2:] = chunk
            dst = _create(out, str(k), shape, chunks, src.dtype, fmt, [names[i] for i in keep])
            copy_blocks(src, dst)
        out.attrs.update(attrs)
    _register(labels_group, name, version)
    return target


def _check_shape(store, image: Path, shape: tuple[int, int]) -> None:
    f = float(store.spec.downsample_to_level0)
    known = store.meta.get("image_shape")
    if known:
        want, slack = tuple(int(v) for v in known[:2]), 0
    else:  # a store without the image shape: its analysis grid times the downsample, to within one analysis px
        want, slack = tuple(round(n * f) for n in store.spec.shape), math.ceil(f)
    if any(abs(a - b) > slack for a, b in zip(shape, want, strict=True)):
        raise ExportError(f"{image} is {shape[0]} x {shape[1]} px at level 0 but store {store.path} was made for "
                          f"a {want[0]} x {want[1]} px image; labels must be written into the image they came from.")


def _level0_transform(dataset: dict, ndim: int) -> tuple[list[float], list[float]]:
    scale, shift = [1.0] * ndim, [0.0] * ndim
    for t in dataset.get("coordinateTransformations") or []:
        if t.get("type") == "scale" and "scale" in t:
            scale = [float(v) for v in t["scale"]]
        elif t.get("type") == "translation" and "translation" in t:
            shift = [float(v) for v in t["translation"]]
    return scale, shift


def _store_level(store, k: int):
    """Level ``k`` of the store's pyramid, strided further past its coarsest level."""
    last = len(store.labels) - 1
    return store.labels[k] if k <= last else Strided(store.labels[last], 2 ** (k - last))


def _register(labels_group, name: str, version: str) -> None:
    """Add ``name`` to the image's ``labels`` list (the last step: readers find the labels only once complete)."""
    attrs = dict(labels_group.attrs)
    if version == "0.5":
        ome = dict(attrs.get("ome") or {})
        listed = list(ome.get("labels") or [])
        if name not in listed:
            labels_group.attrs["ome"] = {**ome, "version": "0.5", "labels": [*listed, name]}
        return
    listed = list(attrs.get("labels") or [])
    if name not in listed:
        labels_group.attrs["labels"] = [*listed, name]

