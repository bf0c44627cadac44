import numpy as np
import pytest

from napari_xt.synthetic import SarSample, TissueSample
from napari_xt.synthetic.sar import NODATA_LABEL


def test_tissue_pyramid_is_lazy_and_strictly_shrinking():
    s = TissueSample(16384, 16384)
    shapes = [lvl.shape for lvl in s.levels]
    assert shapes[0] == (16384, 16384, 3)
    assert all(a[0] > b[0] and a[1] > b[1] for a, b in zip(shapes, shapes[1:], strict=False))
    assert [lvl.shape[:2] for lvl in s.label_levels] == [sh[:2] for sh in shapes]
    # dask graph is one task per chunk: nothing was rendered to build it
    assert s.levels[0].npartitions == 256


def test_tissue_render_is_deterministic_and_chunk_independent():
    s = TissueSample(4096, 4096, seed=3)
    a = s.levels[0][1000:1400, 900:1300].compute()
    b = s.levels[0][1000:1400, 900:1300].compute()
    np.testing.assert_array_equal(a, b)
    # rendering the same pixels through a block that straddles chunk borders gives the same labels
    whole = s.labels(1000, 900, 400, 400)
    parts = np.concatenate([s.labels(1000, 900, 200, 400), s.labels(1200, 900, 200, 400)])
    np.testing.assert_array_equal(whole, parts)


def test_tissue_has_every_class_and_labels_match_pixels():
    s = TissueSample(4096, 4096)
    img = s.levels[1].compute()
    lab = s.label_levels[1].compute()
    counts = np.bincount(lab.ravel(), minlength=4)
    assert (counts > 0).all(), counts
    glass = img[lab == 0].mean(axis=0)
    nuclei = img[lab == 2].mean(axis=0)
    assert glass.min() > 225  # bright background
    assert nuclei.max() < 150  # dark blobs
    assert img[lab == 1][:, 1].mean() < glass[1] - 40  # stroma is pink, not glass


def test_sar_ships_are_where_labels_say_and_bright():
    s = SarSample(4096, 4096, seed=5)
    ships = s.ships()
    assert len(ships) > 5
    img = s.levels[0]
    lab = s.label_levels[0]
    for ship in ships[:5]:
        y, x = int(ship["y"]), int(ship["x"])
        assert lab[y, x].compute() == 2
        assert img[y, x, 0].compute() > -5  # ships are bright in VV dB
    lab1 = s.label_levels[1].compute()
    vv = s.levels[1][..., 0].compute()
    assert np.nanmedian(vv[lab1 == 0]) < -18  # water is dark
    assert np.nanmedian(vv[lab1 == 1]) > -12  # land is brighter
    assert (lab1 == 0).mean() > 0.3 and (lab1 == 1).mean() > 0.1


def test_sar_has_nodata_as_nan_and_label():
    s = SarSample(2048, 2048)
    corner = s.levels[0][-64:, -64:].compute()
    assert np.isnan(corner).all()
    assert (s.label_levels[0][-64:, -64:].compute() == NODATA_LABEL).all()
    assert s.levels[0].dtype == np.float32
    assert s.levels[0].shape[-1] == 2


@pytest.mark.parametrize("cls", [TissueSample, SarSample])
def test_non_square_non_divisible_sizes(cls):
    s = cls(1500, 2300)
    assert s.levels[0].shape[:2] == (1500, 2300)
    low = s.levels[-1].compute()
    assert low.shape[:2] == s.levels[-1].shape[:2]
