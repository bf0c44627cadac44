"""Images know where they are: CRS and transform as GDAL reports them, overviews and alpha of an orthomosaic."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
import tifffile
import zarr
from geohelpers import ORTHO_PX, UTM17, write_ortho, write_scene
from rasterio.transform import Affine

from napari_xt.cli import main
from napari_xt.errors import GeoDependencyMissing
from napari_xt.io import metric_pixel_size, open_image
from napari_xt.io._geo import require


@pytest.fixture(scope="module")
def ortho(tmp_path_factory):
    return write_ortho(tmp_path_factory.mktemp("geo") / "ortho.tif")


def test_projected_cog_ortho_crs_transform_overviews_alpha(ortho):
    with rasterio.open(ortho) as ds:
        crs, transform, overviews = ds.crs, ds.transform, ds.overviews(1)
        alpha = ds.read(4)
    assert tifffile.TiffFile(ortho).is_bigtiff
    with open_image(ortho) as img:
        assert img.georef is not None and img.georef.epsg == 32617
        assert rasterio.crs.CRS.from_wkt(img.georef.crs) == crs
        assert img.georef.transform == pytest.approx(tuple(transform)[:6])
        assert img.pixel_size == pytest.approx((ORTHO_PX, ORTHO_PX)) and img.pixel_unit == "m"
        # RGBA shown as RGB; the COG's internal overviews are the pyramid (not coarsened by us)
        assert img.shape[2] == 3 and img.band_names == ["R", "G", "B"]
        assert img._n_native == 1 + len(overviews)
        with rasterio.open(ortho, overview_level=0) as ov:
            assert img.level_georef(1).transform == pytest.approx(tuple(ov.transform)[:6])
            assert img.levels[1].shape[:2] == ov.shape
        # the alpha band is the nodata mask, at level 0 and on the overviews
        assert np.array_equal(np.asarray(img.nodata_mask(0)), alpha == 0)
        assert np.asarray(img.nodata_mask(1)).mean() == pytest.approx((alpha == 0).mean(), abs=0.01)
    assert metric_pixel_size(open_image(ortho)) == (pytest.approx((ORTHO_PX, ORTHO_PX)), "m")


def test_geographic_scene_degrees_and_metres_at_the_centre(tmp_path):
    px = 1e-4  # degrees
    lat0 = 60.0
    path = write_scene(tmp_path / "s1_4326.tif", "EPSG:4326", Affine(px, 0, 10.0, 0, -px, lat0 + 0.01))
    with open_image(path) as img:
        assert img.georef.geographic and img.georef.epsg == 4326
        assert img.pixel_unit == "deg" and img.pixel_size == pytest.approx((px, px))
        assert img.nodata == -9999.0 and img.band_names == ["VV", "VH"]
        (my, mx), unit = metric_pixel_size(img)
    lat = lat0 + 0.01 - 100 * px  # the scene centre (200 rows)
    # independent check: metres per degree on the WGS 84 ellipsoid (meridian and parallel radii of curvature)
    a, e2 = 6378137.0, 0.00669437999014
    s = math.sin(math.radians(lat))
    m_lat = math.pi / 180 * a * (1 - e2) / (1 - e2 * s * s) ** 1.5
    m_lon = math.pi / 180 * a * math.cos(math.radians(lat)) / math.sqrt(1 - e2 * s * s)
    assert unit == "m"
    assert my == pytest.approx(px * m_lat, rel=1e-3) and mx == pytest.approx(px * m_lon, rel=1e-3)


def test_pixel_is_point_and_rotated_transforms_match_gdal(tmp_path):
    data = np.zeros((64, 80), np.uint16)
    point = tmp_path / "point.tif"
    keys = {"GTModelTypeGeoKey": 1, "GTRasterTypeGeoKey": 2, "ProjectedCSTypeGeoKey": 32633}
    _write_geokeys(point, data, keys, scale=(10.0, 10.0), tie=(0, 0, 400000.0, 5000000.0))
    rotated = tmp_path / "rotated.tif"
    with rasterio.open(rotated, "w", driver="GTiff", dtype="uint16", count=1, width=80, height=64, crs="EPSG:32633",
                       transform=Affine(8.0, 3.0, 400000.0, 2.0, -9.0, 5000000.0)) as dst:
        dst.write(data[None])
    for path in (point, rotated):
        with rasterio.open(path) as ds, open_image(path) as img:
            assert img.georef.transform == pytest.approx(tuple(ds.transform)[:6]), path.name
            assert img.georef.epsg == 32633
    # GDAL moved the PixelIsPoint tie point from the pixel centre to its corner, and so did we
    assert open_image(point).georef.transform[2] == pytest.approx(400000.0 - 5.0)


def test_feet_crs_pixel_size_in_metres(tmp_path):
    path = tmp_path / "ny.tif"  # NAD83 / New York Long Island (ftUS)
    with rasterio.open(path, "w", driver="GTiff", dtype="uint8", count=1, width=50, height=40, crs="EPSG:2263",
                       transform=Affine(2.0, 0, 1000000.0, 0, -2.0, 200000.0)) as dst:
        dst.write(np.ones((1, 40, 50), np.uint8))
    with open_image(path) as img:
        assert img.pixel_unit == "m"
        assert img.pixel_size == pytest.approx((2 * 1200 / 3937, 2 * 1200 / 3937))


def test_geozarr_attributes_on_an_ome_zarr(tmp_path):
    path = tmp_path / "scene.ome.zarr"
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    root.create_array("0", data=np.zeros((1, 120, 160), np.float32), chunks=(1, 64, 64))
    root.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1]}]}]}]}
    root.attrs["proj:code"] = "EPSG:32631"
    root.attrs["spatial:transform"] = [10.0, 0.0, 600000.0, 0.0, -10.0, 4800000.0]
    with open_image(path) as img:
        assert img.georef.epsg == 32631 and img.georef.transform[2] == 600000.0
        assert img.pixel_size == (10.0, 10.0) and img.pixel_unit == "m"


def test_info_shows_the_crs(ortho, capsys):
    assert main(["info", str(ortho)]) == 0
    out = capsys.readouterr().out
    assert "crs      EPSG:32617 (WGS 84 / UTM zone 17N)" in out
    assert "alpha band" in out
    assert main(["info", "--json", str(ortho)]) == 0
    assert '"epsg": 32617' in capsys.readouterr().out


def test_missing_geo_library_is_one_sentence_naming_the_extra():
    with pytest.raises(GeoDependencyMissing) as info:
        require("napari_xt_no_such_geo_module", "writing a GeoPackage")
    text = str(info.value)
    assert text.startswith("writing a GeoPackage needs") and "pip install 'napari-xt[geo]'" in text
    assert UTM17  # the helpers' CRS is what the other tests use


def _write_geokeys(path, data, keys: dict, scale, tie) -> None:
    """A GeoTIFF written by tifffile with hand-made GeoKeys (what GDAL would not write: PixelIsPoint tie points)."""
    ids = {"GTModelTypeGeoKey": 1024, "GTRasterTypeGeoKey": 1025, "ProjectedCSTypeGeoKey": 3072}
    directory = [1, 1, 0, len(keys)]
    for name, value in keys.items():
        directory += [ids[name], 0, 1, value]
    extratags = [(33550, "d", 3, (*scale, 0.0), False), (33922, "d", 6, (*tie[:2], 0.0, *tie[2:], 0.0), False),
                 (34735, "H", len(directory), directory, False)]
    tifffile.imwrite(path, data, extratags=extratags, metadata=None)
