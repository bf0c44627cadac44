"""Result stores with hand-made labels of known geometry, written the way the engine writes them (region by region),
and the checks the export tests share (rasterising polygons back onto the label grid).

The label map (600 x 700 analysis px, 2 level-0 px per analysis px, 128 px chunks, four regions) holds: two discs
(class 1), a ring with a hole (class 3), a wavy band of class 2 crossing chunk and tile borders, a class 1 block
touching the band (two classes touching), and class 3 objects cut by the image edge and corner.
"""

from __future__ import annotations

import numpy as np
from shapely.geometry import MultiPolygon
from shapely.geometry import shape as to_shape
from skimage.draw import polygon as draw_polygon

from napari_xt.store import ResultStore, StoreSpec

SHAPE = (600, 700)
DOWNSAMPLE = 2.0
PIXEL_UM = 0.25
NAMES = ["background", "tumour", "stroma", "vessel"]
COLORS = [[0, 0, 0], [200, 30, 30], [240, 160, 200], [30, 30, 200]]
CORES = [(0, 0, 300, 350), (0, 350, 300, 700), (300, 0, 600, 350), (300, 350, 600, 700)]
META = {"model_checksum": "m", "image_fingerprint": "i", "plan_checksum": "p", "model": "test-model",
        "image": "/data/slide.svs", "image_shape": [1200, 1400, 3], "image_pixel_size": [PIXEL_UM, PIXEL_UM],
        "image_pixel_unit": "um",
        "model_config": {"class_names": {"detection": ["nucleus", "mitosis"], "classification": ["benign",
                                                                                                  "malignant"]}},
        "plan": {"windows": [[0, 1], [2, 3]]}}


def disc(shape, cy, cx, r):
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def make_labels() -> np.ndarray:
    lab = np.zeros(SHAPE, np.uint8)
    lab[disc(SHAPE, 90, 100, 45)] = 1
    lab[disc(SHAPE, 100, 290, 25)] = 1
    lab[disc(SHAPE, 380, 150, 70) & ~disc(SHAPE, 380, 150, 32)] = 3  # ring; its hole crosses no border
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    band = (np.abs(xx - 520 - 40 * np.sin(yy / 45.0)) < 38) & (yy > 150) & (yy < 560)  # crosses y 256/300/384/512
    lab[band] = 2
    lab[470:540, 300:470] = np.where(lab[470:540, 300:470] == 2, 2, 1)  # touches the band
    lab[disc(SHAPE, 250, 699, 50)] = 3  # cut by the right edge
    lab[disc(SHAPE, 0, 0, 30)] = 3  # cut by the top-left corner
    return lab


def detections_for(core) -> dict[str, np.ndarray]:
    y0, x0, y1, x1 = core
    ys = np.array([y0 + 20.5, y0 + 150.0, y1 - 10.25], np.float32) * DOWNSAMPLE  # level-0 px, like the engine
    xs = np.array([x0 + 30.0, x0 + 100.75, x1 - 40.0], np.float32) * DOWNSAMPLE
    return {"y": ys, "x": xs, "h": np.array([8, 10, 12], np.float32), "w": np.array([6, 9, 14], np.float32),
            "cls": np.array([0, 1, 0], np.int32), "score": np.array([0.91, 0.55, 0.7], np.float32)}


def build_store(path, done=(0, 1, 2, 3), finish=True, scores=True, meta=None, detections=True) -> ResultStore:
    spec = StoreSpec(shape=SHAPE, num_classes=4, class_names=NAMES, class_colors=COLORS, region_count=4,
                     chunk=128, min_level_size=100, downsample_to_level0=DOWNSAMPLE)
    store = ResultStore.create(path, spec, META if meta is None else meta)
    lab = make_labels()
    for rid in done:
        y0, x0, y1, x1 = CORES[rid]
        store.write_region(rid, CORES[rid], lab[y0:y1, x0:x1],
                           detections=detections_for(CORES[rid]) if detections else None)
    if scores:
        store.set_window_scores(0, [0.2, 0.8])
        store.set_window_scores(1, [0.6, 0.4])
        store.set_image_scores([0.4, 0.6], ["benign", "malignant"])
    if finish:
        store.finish({"regions_done": len(done)})
    return ResultStore.open(path)



def rasterise(geometry, grid_shape, px_per_cell: float) -> np.ndarray:
    """Cells whose centre lies inside a GeoJSON (Multi)Polygon given in level-0 px with a pixel-corner origin."""
    geom = to_shape(geometry)
    out = np.zeros(grid_shape, bool)
    for poly in geom.geoms if isinstance(geom, MultiPolygon) else [geom]:
        for ring in [poly.exterior, *poly.interiors]:
            xy = np.asarray(ring.coords) / px_per_cell - 0.5  # corner origin -> cell-centre indices
            rr, cc = draw_polygon(xy[:, 1], xy[:, 0], grid_shape)
            out[rr, cc] ^= True  # even-odd: holes cut out
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))
