"""OME-Zarr label export read back by ome-zarr-py's own reader, checked by ome-zarr-models, opened in napari."""

import json
import warnings

import numpy as np
import pytest
import zarr
from exporthelpers import COLORS, NAMES, PIXEL_UM, ResultStore, StoreSpec
from ome_zarr.format import FormatV04, FormatV05
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from ome_zarr.scale import Methods
from ome_zarr.writer import write_image

from napari_xt.export import ExportError, export_ome_zarr_labels


def _nodes(path):
    return list(Reader(parse_url(str(path)))())


def _image(path, fmt, shape=(1200, 1400)):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "no scale for axis c": channels have none
        write_image(np.zeros((1, *shape), np.uint8), str(path), scale_factors=(2, 4), axes="cyx", fmt=fmt,
                    method=Methods.NEAREST, scale={"y": PIXEL_UM, "x": PIXEL_UM},
                    axes_units={"y": "micrometer", "x": "micrometer"})
    return path


def test_standalone_labels_round_trip_through_ome_zarr_py(store, tmp_path):
    out = export_ome_zarr_labels(store, tmp_path / "labels.ome.zarr")
    assert out == tmp_path / "labels.ome.zarr" and not list(tmp_path.glob(".*"))
    node = _nodes(out)[0]
    assert len(node.data) == len(store.labels) == 4
    for level, data in zip(store.labels, node.data, strict=True):
        np.testing.assert_array_equal(np.asarray(data), level[:])
    assert node.metadata["properties"] == {i: {"class": n} for i, n in enumerate(NAMES)}
    assert node.metadata["color"][2] == pytest.approx([c / 255 for c in COLORS[2]] + [1.0])
    assert node.metadata["color"][0][3] == 0  # background transparent
    scales = [t[0]["scale"] for t in node.metadata["coordinateTransformations"]]
    assert scales == [[PIXEL_UM * 2 * 2**k] * 2 for k in range(4)]  # µm per px: pixel size x analysis x level
    assert [a["unit"] for a in node.metadata["axes"]] == ["micrometer", "micrometer"]

    attrs = zarr.open_group(str(out), mode="r").attrs
    assert attrs["ome"]["version"] == "0.5" and attrs["napari_xt"]["partial"] is False
    assert attrs["napari_xt"]["source_store"] == str(store.path)

    from ome_zarr_models.v05.image_label import (
        ImageLabel,  # the strict NGFF 0.5 validator
    )

    ImageLabel.from_zarr(zarr.open_group(str(out), mode="r"))


def test_labels_without_pixel_size_are_in_pixels(tmp_path):
    spec = StoreSpec(shape=(300, 260), num_classes=3, region_count=1, chunk=100, min_level_size=400)
    store = ResultStore.create(tmp_path / "s.zarr", spec, {})
    store.write_region(0, (0, 0, 300, 260), np.tile(np.arange(260) % 3, (300, 1)).astype(np.uint8))
    store.finish({})
    out = export_ome_zarr_labels(store, tmp_path / "px.ome.zarr", name="tissue")
    ms = zarr.open_group(str(out), mode="r").attrs["ome"]["multiscales"][0]
    assert ms["name"] == "tissue" and "unit" not in ms["axes"][0]
    assert ms["datasets"][0]["coordinateTransformations"] == [{"type": "scale", "scale": [1.0, 1.0]}]
    label = zarr.open_group(str(out), mode="r").attrs["ome"]["image-label"]
    assert [p["class"] for p in label["properties"]] == ["class 0", "class 1", "class 2"]  # generic names
    np.testing.assert_array_equal(zarr.open_array(str(out / "0"), mode="r")[:], store.labels[0][:])


@pytest.mark.parametrize(("fmt", "version"), [(FormatV05(), "0.5"), (FormatV04(), "0.4")])
def test_into_an_existing_image_adds_a_labels_group(store, tmp_path, fmt, version):
    image = _image(tmp_path / f"slide{version}.ome.zarr", fmt)
    target = export_ome_zarr_labels(store, None, into=image, name="xt")
    assert target == image / "labels" / "xt"
    nodes = _nodes(image)
    labels = next(n for n in nodes if "properties" in n.metadata)
    assert len(labels.data) == 3  # as many levels as the image (validators insist)
    np.testing.assert_array_equal(np.asarray(labels.data[0]), store.labels[0][:])
    np.testing.assert_array_equal(np.asarray(labels.data[2]), store.labels[0][::4, ::4])  # strided like the store
    assert [a["name"] for a in labels.metadata["axes"]] == ["y", "x"]  # no channel axis on labels
    scale = labels.metadata["coordinateTransformations"][0][0]["scale"]
    assert scale == [PIXEL_UM * 2, PIXEL_UM * 2]  # one analysis px = 2 image px of 0.25 µm

    group = zarr.open_group(str(image), mode="r")
    assert group.metadata.zarr_format == (3 if version == "0.5" else 2)
    listed = group["labels"].attrs["ome"]["labels"] if version == "0.5" else group["labels"].attrs["labels"]
    assert listed == ["xt"]

    with pytest.raises(ExportError, match="already has labels/xt"):
        export_ome_zarr_labels(store, None, into=image, name="xt")
    export_ome_zarr_labels(store, None, into=image, name="xt", overwrite=True)
    export_ome_zarr_labels(store, None, into=image, name="second")
    group = zarr.open_group(str(image), mode="r")
    listed = group["labels"].attrs["ome"]["labels"] if version == "0.5" else group["labels"].attrs["labels"]
    assert listed == ["xt", "second"]
    assert not [p.name for p in (image / "labels").iterdir() if p.name.startswith(".") and p.is_dir()]

    if version == "0.5":
        from ome_zarr_models.v05.image import Image

        Image.from_zarr(zarr.open_group(str(image), mode="r"))  # label levels match the image's
    else:
        from ome_zarr_models.v04.image import Image

        Image.from_zarr(zarr.open_group(str(image), mode="r", zarr_format=2))


def test_into_refuses_an_image_of_another_size(store, tmp_path):
    image = _image(tmp_path / "other.ome.zarr", FormatV05(), shape=(1000, 1400))
    with pytest.raises(ExportError, match=r"1000 x 1400 px .* 1200 x 1400 px"):
        export_ome_zarr_labels(store, None, into=image)
    assert not (image / "labels").exists()
    with pytest.raises(ExportError, match="not a readable OME-Zarr image|no OME-Zarr 'multiscales'"):
        export_ome_zarr_labels(store, None, into=tmp_path / "missing.ome.zarr")
    with pytest.raises(ExportError, match="plain folder name"):
        export_ome_zarr_labels(store, tmp_path / "x.ome.zarr", name="../escape")


def test_store_without_labels_is_refused(tmp_path):
    spec = StoreSpec(shape=(64, 64), num_classes=0, region_count=1)
    store = ResultStore.create(tmp_path / "det.zarr", spec, {})
    with pytest.raises(ExportError, match="no label map"):
        export_ome_zarr_labels(store, tmp_path / "x.ome.zarr")
    assert not (tmp_path / "x.ome.zarr").exists()


def test_napari_opens_the_export(make_napari_viewer, store, tmp_path):
    out = export_ome_zarr_labels(store, tmp_path / "view.ome.zarr")
    viewer = make_napari_viewer()
    layers = viewer.open(str(out), plugin="napari-xt")
    assert len(layers) == 1 and layers[0].multiscale
    for level, data in zip(store.labels, layers[0].data, strict=True):
        np.testing.assert_array_equal(np.asarray(data).reshape(level.shape), level[:])
    assert json.loads((out / "zarr.json").read_text())["attributes"]["ome"]["image-label"]["properties"][1] == {
        "label-value": 1, "class": "tumour"}
