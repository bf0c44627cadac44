"""Preparing a run over a huge plan must not hold the GIL in one long stretch (issue 25: the viewer froze while its
worker prepared a 150k-region plan): the plan checksum is hashed from JSON pieces, the same digest as one dump, and
the store's metadata no longer deep-copies every region."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace

from napari_xt.app import driver
from napari_xt.app.request import PlanOptions, PredictRequest
from napari_xt.engine import plan as plan_module
from napari_xt.engine.plan import make_plan
from napari_xt.synthetic import TissueSample
from napari_xt.synthetic.image import synthetic_image


def _one_dump_checksum(plan) -> str:
    """The checksum as it was computed before (one ``json.dumps``): stores made then must still match."""
    key = {"level": plan.level, "scale": round(plan.scale, 6), "shape": plan.analysis_shape,
           "region_size": plan.region_size, "overlap": plan.overlap, "context": plan.context,
           "window_size": plan.window_size, "regions": [(r.id, r.box, r.core) for r in plan.regions],
           "windows": sorted(sorted(w) for w in plan.windows)}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def test_the_plan_checksum_is_hashed_in_pieces_with_the_same_digest(monkeypatch):
    image = synthetic_image(TissueSample(6000, 6000, seed=0))
    plan = make_plan(image, region_size=96, overlap=16, level=0, window_size=3, use_mask=False)
    assert len(plan.regions) > plan_module.JSON_CHUNK  # more than one piece
    expected = _one_dump_checksum(plan)
    assert plan.checksum() == expected
    dumped: list[int] = []
    real = json.dumps

    def counting(value, **kwargs):
        text = real(value, **kwargs)
        dumped.append(len(text))
        return text

    monkeypatch.setattr(plan_module.json, "dumps", counting)
    monkeypatch.setattr(plan_module, "JSON_CHUNK", 7)  # many small pieces, still the same digest
    assert plan.checksum() == expected
    assert max(dumped) < 2000 < sum(dumped)  # no single dump of the whole key


def test_store_metadata_keeps_the_plan_fields_without_copying_regions():
    image = synthetic_image(TissueSample(1024, 1536, seed=0))
    request = PredictRequest(image="synthetic", model="tiny-hyper-seg", out="unused.xt.zarr",
                             plan=PlanOptions(level=0, region_size=256, use_mask=False))
    inputs = driver.resolve(request, image=image)
    meta = driver._store_meta(inputs)
    plan = inputs.plan
    old = {k: v for k, v in asdict(plan).items() if k not in ("regions", "windows", "run_order")}
    assert {k: v for k, v in meta["plan"].items() if k != "windows"} == old
    assert meta["plan"]["windows"] == plan.windows_by_id()

    class Untouchable(tuple):
        def __iter__(self):
            raise AssertionError("the store's metadata went through every region")

    huge = replace(inputs, plan=replace(plan, regions=Untouchable(plan.regions)))
    assert driver._store_meta(huge)["plan"]["region_size"] == 256
