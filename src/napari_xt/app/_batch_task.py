"""What runs on a dask worker: one image from path to finished result store, returned as a manifest record.

A worker process keeps one model per (checkpoint, device) for its whole life (:func:`cached_model`), so a batch of
hundreds of slides loads the model once per worker, not once per slide. Images are opened here from their path: a
``LargeImage`` holds open files and lazy arrays bound to them, and must never travel through dask. A task never
raises; every problem becomes a ``failed`` record with one readable sentence, so one bad slide cannot stop the rest.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .._compat import keep_triton_out_without_cuda
from ..errors import StoreMismatch
from . import driver
from ._manifest import make_record, now_iso
from .events import RunSummary
from .request import PredictRequest

Describe = Callable[[BaseException], str]

log = logging.getLogger(__name__)

#: seed of preset (random-init) models, so every worker process builds the same weights and a re-run can skip
PRESET_SEED = 0

_models: dict[tuple, object] = {}
_model_loads = 0
_model_lock = threading.Lock()
_torch_threads: int | None = None


def cached_model(name: str, device: str):
    """The model for ``(name, device)``, loaded the first time this process asks and reused for every later image.

    A checkpoint's modification time is part of the key, so a long-lived cluster picks up a retrained file. Presets
    are random-init: they are built under a fixed seed (without disturbing the caller's RNG), otherwise each worker
    would hold different weights and no finished store would ever match on a re-run.
    """
    global _model_loads

    path = Path(name)
    key = (os.path.abspath(name), path.stat().st_mtime_ns, device) if path.is_file() else (name, None, device)
    with _model_lock:
        if key not in _models:
            import torch

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(PRESET_SEED)
                _models[key] = driver.load_model(name)
            _model_loads += 1
        return _models[key]


def worker_device(device: str, worker_name, n_gpus: int) -> str:
    """The device worker ``worker_name`` runs on: worker ``i`` of a LocalCluster gets ``cuda:i`` (modulo the GPUs).

    Only for ``auto``/``cuda`` on clusters we started (``n_gpus > 0``): LocalCluster names its workers 0..N-1. On a
    cluster started elsewhere the caller passes ``n_gpus=0`` and each worker keeps its own default GPU (its
    ``CUDA_VISIBLE_DEVICES``), which is how dask-cuda and job schedulers pin GPUs. ``cuda:N`` and ``cpu`` are kept.
    """
    if n_gpus < 1 or device not in ("auto", "cuda"):
        return device
    try:
        index = int(str(worker_name))
    except ValueError:
        return device
    return f"cuda:{index % n_gpus}"


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return "local"


def _set_torch_threads(n: int | None) -> None:
    global _torch_threads
    if n and n != _torch_threads:
        import torch

        torch.set_num_threads(int(n))
        _torch_threads = int(n)


def _reads_here(worker: str):
    """Make the image's lazy reads run in this process, on threads; returns a context for the task to run in.

    Inside a worker (or next to a Client) dask would send them to the cluster, and fail: a ``LargeImage``'s arrays
    hold open files. On a worker the setting is process-wide on purpose (tasks on several threads share it, and a
    context exiting in one thread must not undo it for another). tifffile logs an error per bad tag of a corrupt
    file, which would flood the terminal from every worker; the manifest already says which file failed and why.
    """
    import dask

    if worker == "local":
        return dask.config.set(scheduler="threads")
    dask.config.set(scheduler="threads")
    logging.getLogger("tifffile").setLevel(logging.CRITICAL)
    return contextlib.nullcontext()


def warm_up() -> int:
    """Import torch and the engine on a worker before the first image, so its time is not charged to that image."""
    keep_triton_out_without_cuda()
    from ..engine import run  # noqa: F401 - the import is the point

    return os.getpid()


def process_image(image: str, store: str, template: PredictRequest, overwrite: bool = False, n_gpus: int = 0,
                  torch_threads: int | None = None, describe: Describe | None = None) -> dict:
    """Run one image into ``store`` and return its manifest record (plus ``pid``/``model_loads`` diagnostics).

    ``template`` is the batch's request (its image and out are replaced); ``describe`` words errors for the manifest
    (the CLI passes its own, with flag advice).
    """
    keep_triton_out_without_cuda()
    describe = describe or plain_description
    t0, started, worker = time.perf_counter(), now_iso(), _worker_name()
    try:
        _set_torch_threads(torch_threads)
        device = worker_device(template.run.device, worker, n_gpus)
        request = template.with_(image=image, out=store, resume=False, overwrite=False).with_run(device=device)
        with _reads_here(worker):
            status, summary = _run_one(request, overwrite)
        failed = summary.regions_failed if summary else 0
        error = ""
        if failed:
            status, error = "failed", f"{failed} region(s) could not be read; re-run to retry them"
        elif summary is not None and summary.cancelled:
            status = "cancelled"
        record = make_record(image, store, status, regions_total=summary.regions_total if summary else 0,
                             regions_done=summary.regions_done if summary else 0, regions_failed=failed,
                             regions_per_s=summary.regions_per_s if summary else 0.0, error=error)
        if summary is None:  # skipped: the counts of the run that finished it
            record.update(_earlier_counts(Path(store)))
    except Exception as err:  # one bad image must never stop the batch
        log.debug("image %s failed", image, exc_info=True)
        record = make_record(image, store, "failed", error=describe(err))
    record.update(seconds=round(time.perf_counter() - t0, 3), worker=worker, started=started, finished=now_iso(),
                  pid=os.getpid(), model_loads=_model_loads)
    return record


def _earlier_counts(store: Path) -> dict[str, int]:
    from ..store import ResultStore

    earlier = ResultStore.open(store).meta.get("summary") or {}
    return {k: int(earlier.get(k, 0)) for k in ("regions_total", "regions_done", "regions_failed")}


def _run_one(request: PredictRequest, overwrite: bool) -> tuple[str, RunSummary | None]:
    """Decide done / skipped / resumed for one image and run it; returns (status, summary or None when skipped).

    A finished store is skipped only when its cheap damage check passes; a damaged one is resumed, which repairs it
    (:mod:`napari_xt.store.check`); one whose own metadata is lost is made again with ``overwrite`` only.
    """
    from ..store import is_store, looks_like_store
    from ..store.schema import root_damage

    model = cached_model(request.model, request.run.device)
    out = Path(request.out)
    if not is_store(out) and not looks_like_store(out):
        return "done", driver.predict(request, model=model)
    meta, lost = root_damage(out)
    if lost is not None or meta is None:
        if not overwrite:
            raise lost.error(out) if lost is not None else StoreMismatch(out, ["unreadable metadata"])
        return "done", driver.predict(request.with_(overwrite=True), model=model)
    inputs = driver.resolve(request, model=model)
    problems = [m.another() for m in inputs.identity.mismatches(meta)]
    if problems and not overwrite:
        raise StoreMismatch(out, problems)
    if problems:
        request = request.with_(overwrite=True)
        return "done", driver.predict(request, prepared=driver.prepare(request, inputs=inputs))
    if meta.get("complete") and not _damaged(out):
        return "skipped", None
    request = request.with_(resume=True)
    return "resumed", driver.predict(request, prepared=driver.prepare(request, inputs=inputs))


def _damaged(store: Path) -> bool:
    """The cheap check (layout, done regions' chunk files) of a finished store before it is skipped."""
    from ..errors import StoreDamaged
    from ..store import ResultStore

    try:
        return bool(ResultStore.open(store).damage())
    except StoreDamaged:
        return True


def plain_description(err: BaseException) -> str:
    """The error as one line, with its type where the message alone says little (dask's own errors)."""
    text = " ".join(str(err).split())
    if not text or type(err).__name__ in ("KeyError", "KilledWorker", "CancelledError", "TimeoutError"):
        return f"{type(err).__name__}: {text}".rstrip(": ")
    return text
