"""Score-against-labelled-regions curves drawn with PIL (matplotlib is not a dependency of napari-xt or its tests).

One panel per data set: each strategy's mean over the seeds as a line with dots, its range over the seeds as a
light band, and random's final mean as a dashed line, so "suggestions reach it with half the regions" can be read off.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLOURS = {"random": (120, 120, 120), "suggest": (230, 120, 0)}
LABELS = {"random": "random regions", "suggest": "suggested regions"}


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def plot_curves(results: dict, path: Path, panel: tuple[int, int] = (520, 380)) -> Path:
    """``results[name] = {"metric", "runs": [{"curves": {strategy: [{"labelled", "score"}, ...]}}]}`` -> a PNG."""
    names = list(results)
    img = Image.new("RGB", (panel[0] * max(len(names), 1), panel[1]), "white")
    for n, name in enumerate(names):
        _panel(img, n * panel[0], name, results[name], panel)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=True)
    return path


def _panel(img: Image.Image, ox: int, name: str, result: dict, size: tuple[int, int]) -> None:
    w, h = size
    draw = ImageDraw.Draw(img)
    font, small = _font(15), _font(12)
    runs = result["runs"]
    left, right, top, bottom = 60, 20, 40, 55
    x_counts = [p["labelled"] for p in runs[0]["curves"]["random"]]
    vals = {s: np.array([[p["score"] for p in r["curves"][s]] for r in runs]) for s in ("random", "suggest")}
    hi = max(float(v.max()) for v in vals.values())
    y_max = max(0.1, math.ceil(hi * 10 + 0.5) / 10)
    x0, x1 = ox + left, ox + w - right
    y0, y1 = h - bottom, top

    def sx(c: float) -> float:
        return x0 + (c - x_counts[0] + 0.5) / (x_counts[-1] - x_counts[0] + 1) * (x1 - x0)

    def sy(v: float) -> float:
        return y0 - v / y_max * (y0 - y1)

    draw.rectangle([x0, y1, x1, y0], outline=(0, 0, 0))
    for t in np.linspace(0, y_max, 6):
        draw.line([x0 - 4, sy(t), x0, sy(t)], fill=(0, 0, 0))
        draw.line([x0 + 1, sy(t), x1 - 1, sy(t)], fill=(235, 235, 235))
        draw.text((x0 - 8, sy(t)), f"{t:.2f}", fill=(0, 0, 0), font=small, anchor="rm")
    for c in x_counts:
        draw.line([sx(c), y0, sx(c), y0 + 4], fill=(0, 0, 0))
        draw.text((sx(c), y0 + 6), str(c), fill=(0, 0, 0), font=small, anchor="mt")
    target = float(vals["random"].mean(0)[-1])
    for xa in range(int(x0), int(x1), 10):
        draw.line([xa, sy(target), min(xa + 5, x1), sy(target)], fill=COLOURS["random"])
    for s in ("random", "suggest"):
        lo, up = vals[s].min(0), vals[s].max(0)
        band = [(sx(c), sy(v)) for c, v in zip(x_counts, up, strict=True)]
        band += [(sx(c), sy(v)) for c, v in reversed(list(zip(x_counts, lo, strict=True)))]
        light = tuple(int(255 - (255 - c) * 0.25) for c in COLOURS[s])
        overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
        ImageDraw.Draw(overlay).polygon(band, fill=(*light, 140))
        img.paste(Image.alpha_composite(img.convert("RGBA"), overlay).convert("RGB"))
    draw = ImageDraw.Draw(img)
    for s in ("random", "suggest"):
        pts = [(sx(c), sy(v)) for c, v in zip(x_counts, vals[s].mean(0), strict=True)]
        draw.line(pts, fill=COLOURS[s], width=3)
        for x, y in pts:
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=COLOURS[s])
    seeds = len(runs)
    draw.text((ox + w / 2, 8), f"{name}: {result['metric']} ({seeds} seed{'s' * (seeds > 1)})", fill=(0, 0, 0),
              font=font, anchor="mt")
    draw.text(((x0 + x1) / 2, h - 22), "labelled regions (256 px)", fill=(0, 0, 0), font=small, anchor="mt")
    for k, s in enumerate(("suggest", "random")):
        ly = y1 + 10 + 18 * k
        draw.line([x0 + 10, ly, x0 + 34, ly], fill=COLOURS[s], width=3)
        draw.text((x0 + 40, ly), LABELS[s], fill=(0, 0, 0), font=small, anchor="lm")
    draw.text((x1 - 6, sy(target) - 3), "random's final", fill=COLOURS["random"], font=small, anchor="rb")
    draw.rectangle([x0, y1, x1, y0], outline=(0, 0, 0))  # the frame again, over the grid and the bands
