"""File > Open Sample: the synthetic tissue slide and SAR scene, with their ground truth as extra layers.

Both are rendered lazily per chunk, so a 16k x 16k sample opens instantly and only the tiles in view are computed.
"""

from __future__ import annotations

import numpy as np

from .synthetic import SarSample, TissueSample


def _label_colors(colors: list[list[int]]) -> dict:
    out: dict = {None: [0, 0, 0, 0]}
    for i, c in enumerate(colors):
        out[i] = [v / 255 for v in c] + [1.0 if i else 0.0]
    return out


#: Render chunk of the samples: 512 px renders in ~0.25 s, so the first tiles (and a first analysed region) show
#: quickly; 1024 px chunks took ~1 s each.
CHUNK = 512


def tissue_slide(size: int = 16384, seed: int = 0) -> list[tuple]:
    sample = TissueSample(size, size, seed=seed, chunk=CHUNK)
    scale = (sample.pixel_size, sample.pixel_size)
    image = (
        sample.levels,
        {
            "name": "synthetic tissue",
            "rgb": True,
            "multiscale": True,
            "scale": scale,
            "units": ("µm", "µm"),
            "metadata": {"napari_xt": {"kind": "brightfield", "pixel_size": scale, "synthetic": "tissue",
                                       "sample": {"size": size, "seed": seed, "chunk": CHUNK}}},
        },
        "image",
    )
    truth = (
        sample.label_levels,
        {
            "name": "ground truth (tissue)",
            "multiscale": True,
            "scale": scale,
            "units": ("µm", "µm"),
            "visible": False,
            "opacity": 0.5,
            "colormap": _label_colors(sample.class_colors),
            "features": {"class": sample.class_names},
        },
        "labels",
    )
    return [image, truth]


def sar_scene(size: int = 16384, seed: int = 0) -> list[tuple]:
    sample = SarSample(size, size, seed=seed, chunk=CHUNK)
    scale = (sample.pixel_size, sample.pixel_size)
    low = sample.levels[-1].compute()
    lo, hi = (float(v) for v in np.nanpercentile(low[..., 0], [1, 99]))
    image = (
        [lvl[..., 0] for lvl in sample.levels],
        {
            "name": "synthetic SAR (VV, dB)",
            "multiscale": True,
            "scale": scale,
            "units": ("m", "m"),
            "contrast_limits": (lo, hi),
            "colormap": "gray",
            "metadata": {"napari_xt": {"kind": "sar", "pixel_size": scale, "synthetic": "sar", "band": "VV",
                                       "sample": {"size": size, "seed": seed, "chunk": CHUNK}}},
        },
        "image",
    )
    ships = sample.ships()
    points = (
        np.stack([ships["y"], ships["x"]], axis=1),
        {
            "name": "ground truth ships",
            "scale": scale,
            "units": ("m", "m"),
            "size": 60,
            "border_color": "red",
            "face_color": "transparent",
            "visible": False,
            "properties": {"length": ships["length"], "width": ships["width"]},
        },
        "points",
    )
    return [image, points]
