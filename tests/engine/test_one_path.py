"""One request, three callers, one path: the CLI, a batch worker and the dock's runner make identical stores.

The same request (a saved checkpoint, so every caller holds the very same weights) goes through
1. ``napari-xt predict ... --json`` (``napari_xt.cli.main``),
2. the batch worker's task ``app._batch_task.process_image``, called in this process (what a dask worker runs),
3. the dock's worker side, ``app.session.prepare`` + ``session.stream`` (no Qt needed),
and the three stores (labels, detections, window and image scores, done maps, identities) and the three summaries
(less timing and the store path) must be equal.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from napari_xt.app import session
from napari_xt.app._batch_task import process_image
from napari_xt.app.events import RegionDone, RunFinished, RunStarted, WindowScored
from napari_xt.app.request import make_request
from napari_xt.cli import build_parser, main
from napari_xt.cli._predict import build_request
from napari_xt.model import XTConfig, build_model, save_model
from napari_xt.store import ResultStore

#: what differs between runs of the same work: timing, and where each caller put its store
VOLATILE = ("seconds", "regions_per_s", "peak_rss_mb", "store")
OPTIONS = dict(level=0, region_size=256, window_size=2, batch_size=2, use_mask=False, device="cpu",
               score_threshold=0.0, max_detections_per_region=20)
FLAGS = ["--level", "0", "--region-size", "256", "--window-size", "2", "--batch-size", "2", "--no-mask", "--device",
         "cpu", "--score-threshold", "0", "--max-detections", "20"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny model with all three heads (segmentation, detection, classification), saved to a file."""
    torch.manual_seed(3)
    cfg = XTConfig(region_encoder="tiny", region_size=256, sub_region_size=128, context_encoder="transformer_xl",
                   context_encoder_kwargs={"hidden": 32, "layers": 1, "heads": 2},
                   heads={"segmentation": {"num_classes": 3}, "detection": {"num_classes": 2},
                          "classification": {"num_classes": 3}},
                   class_names={"segmentation": ["background", "stroma", "nucleus"],
                                "detection": ["cell", "mitosis"], "classification": ["normal", "tumour", "other"]},
                   pixel_size=None)
    return save_model(build_model(cfg), tmp_path_factory.mktemp("one_path") / "three_heads.safetensors")


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    from napari_xt.synthetic import TissueSample
    from napari_xt.synthetic.export import write_ome_tiff

    # 512 x 768 px: 2 x 3 regions of 256 px, in 2 windows of 2 x 2 regions (one of them cut by the edge)
    return write_ome_tiff(TissueSample(512, 768, seed=5), tmp_path_factory.mktemp("one_path") / "slide.ome.tif")


@pytest.fixture
def one_thread():
    """One torch thread for every caller: the dock's stream leaves a core to the viewer, and another thread count
    sums in another order (an argmax near a tie may flip), which is not what this test is about."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _stable(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in VOLATILE}


def _contents(path) -> dict:
    store = ResultStore.open(path)
    image_scores = store.image_scores()
    return {
        "labels": [np.asarray(level[:]) for level in store.labels],
        "detections": store.detections(),
        "window_scores": store.window_scores(),
        "image_scores": None if image_scores is None else (image_scores[0], image_scores[1]),
        "done": store.done_ids(),
        "complete": store.complete,
        "identity": {k: store.meta[k] for k in ("model_checksum", "image_fingerprint", "plan_checksum", "plan",
                                                  "model", "image", "model_config", "image_shape")},
        "summary": store.meta["summary"],
    }


def _assert_same_store(a: dict, b: dict, which: str) -> None:
    assert len(a["labels"]) == len(b["labels"]), which
    for la, lb in zip(a["labels"], b["labels"], strict=True):
        np.testing.assert_array_equal(la, lb, err_msg=which)
    assert sorted(a["detections"]) == sorted(b["detections"]), which
    for key in a["detections"]:
        np.testing.assert_array_equal(a["detections"][key], b["detections"][key], err_msg=f"{which}: {key}")
    assert sorted(a["window_scores"]) == sorted(b["window_scores"]), which
    for w in a["window_scores"]:
        np.testing.assert_array_equal(a["window_scores"][w], b["window_scores"][w], err_msg=f"{which}: window {w}")
    np.testing.assert_array_equal(a["image_scores"][0], b["image_scores"][0], err_msg=which)
    assert a["image_scores"][1] == b["image_scores"][1], which
    np.testing.assert_array_equal(a["done"], b["done"], err_msg=which)
    assert a["complete"] and b["complete"], which
    assert a["identity"] == b["identity"], which
    assert _stable(a["summary"]) == _stable(b["summary"]), which


def test_cli_batch_worker_and_dock_runner_give_identical_stores_and_summaries(checkpoint, image, tmp_path, capsys,
                                                                               one_thread):
    request = make_request(str(image), str(checkpoint), str(tmp_path / "dock.xt.zarr"), **OPTIONS)
    # the CLI's flags describe this very request
    args = build_parser().parse_args(["predict", str(image), "--model", str(checkpoint), "--out", request.out, *FLAGS])
    assert build_request(args, image=str(image), out=request.out) == request

    # 1. the CLI
    cli_out = tmp_path / "cli.xt.zarr"
    code = main(["predict", str(image), "--model", str(checkpoint), "--out", str(cli_out), *FLAGS, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    cli_summary = json.loads(captured.out.strip().splitlines()[-1])
    assert cli_summary["store"] == str(cli_out)

    # 2. the batch worker's task, with the batch's template request (its image and store are set per image)
    batch_out = tmp_path / "batch.xt.zarr"
    record = process_image(str(image), str(batch_out), request.with_(image="", out=""))
    assert record["status"] == "done", record
    assert record["regions_done"] == record["regions_total"] == cli_summary["regions_total"]

    # 3. the dock's worker side: prepare from the image layer (reopened from its file), then stream the events
    layer = SimpleNamespace(name="slide", metadata={"napari_xt": {"path": str(image)}}, scale=(1.0, 1.0),
                            translate=(0.0, 0.0))
    prepared = session.prepare(request, layer, None)
    events = list(session.stream(prepared))
    assert isinstance(events[0], RunStarted) and events[0].n_total == 6 and events[0].layout is not None
    end = events[-1]
    assert isinstance(end, RunFinished) and end.status == "complete" and end.error is None
    assert sum(isinstance(e, RegionDone) for e in events) == 6 and sum(isinstance(e, WindowScored) for e in events) == 2
    dock_summary = end.summary.to_dict()

    # identical summaries: the CLI's JSON, the summary the worker's store keeps, the dock's RunFinished
    stores = {"cli": _contents(cli_out), "batch": _contents(batch_out), "dock": _contents(request.out)}
    assert _stable(cli_summary) == _stable(dock_summary) == _stable(stores["batch"]["summary"])
    assert dock_summary["regions_done"] == dock_summary["regions_new"] == 6 and dock_summary["regions_failed"] == 0
    assert len(dock_summary["image_scores"]) == 3 and not dock_summary["cancelled"]
    np.testing.assert_allclose(end.image_scores, stores["dock"]["image_scores"][0])

    # identical stores
    reference = stores["cli"]
    assert len(reference["detections"]["y"]) > 0  # the comparison covers real detections
    assert reference["labels"][0].shape == (512, 768) and reference["labels"][0].any()
    for which in ("batch", "dock"):
        _assert_same_store(reference, stores[which], f"cli vs {which}")
