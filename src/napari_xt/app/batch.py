"""Many images, one command: each image is one dask.distributed task that writes its own result store.

Why dask.distributed and not a home-made pool: the same code runs on a laptop (``LocalCluster``), a multi-GPU node
(one worker per GPU) and an HPC or Kubernetes cluster started by dask-jobqueue / dask-kubernetes or by hand
(``dask scheduler`` + ``dask worker``), and users get the dask dashboard for free.

This module is the client side: start or join a cluster, submit one task per image (:mod:`._batch_task`, which
receives an image *path* and the batch's :class:`~.request.PredictRequest`), gather records as images
finish and keep the manifest current. Finished images are skipped and partial ones resumed, so re-running the same
command after a crash, a pre-emption or a fix is always the right move.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._batch_task import Describe, cached_model, plain_description, process_image, warm_up, worker_device
from ._inputs import InputItem, expand_inputs, store_paths
from ._manifest import SUCCESS, count_statuses, make_record, now_iso, write_manifest
from .request import PredictRequest

__all__ = ["BatchResult", "cached_model", "connect", "default_workers", "expand_inputs", "process_image",
           "run_batch", "worker_device"]


@dataclass
class BatchResult:
    records: list[dict]  # input order; every record has the manifest columns (and, from workers, pid/model_loads)
    manifest: Path
    seconds: float
    workers: int

    @property
    def counts(self) -> dict[str, int]:
        return count_statuses(self.records)

    @property
    def ok(self) -> bool:
        return all(r["status"] in SUCCESS for r in self.records)

    def summary(self) -> dict:
        return {"images": len(self.records), **self.counts, "workers": self.workers,
                "seconds": round(self.seconds, 3), "manifest": str(self.manifest)}


def gpu_count() -> int:
    try:
        import torch

        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:
        return 0


def default_workers(device: str, n_gpus: int, cpus: int | None) -> int:
    """One worker per GPU when the run is on GPUs; else at most two CPU workers (torch already uses the cores)."""
    if n_gpus > 0 and device in ("auto", "cuda"):
        return n_gpus
    return max(1, min(2, (cpus or 1) // 2 or 1))


@contextlib.contextmanager
def connect(scheduler: str = "local", workers: int | None = None, threads_per_worker: int = 1,
            device: str = "auto") -> Iterator[tuple[Any, int]]:
    """``(client, n_gpus)``: a LocalCluster we start and stop, or a client of a running cluster we leave running.

    ``n_gpus`` is what :func:`worker_device` may assign: the local GPU count for our own cluster, 0 elsewhere.
    """
    from distributed import Client, LocalCluster

    if scheduler != "local":
        with Client(scheduler) as client:  # closing a client leaves its cluster running
            yield client, 0
        return
    n_gpus = gpu_count()
    n = workers or default_workers(device, n_gpus, os.cpu_count())
    with _quiet_distributed(), warnings.catch_warnings():
        # dask warns about the dashboard (port taken, bokeh missing or too old); the CLI says it once, plainly
        warnings.filterwarnings("ignore", message=".*[Dd]ashboard.*")
        warnings.filterwarnings("ignore", message=".*[Bb]okeh.*")
        # workers log heartbeat errors while a finished cluster shuts down; our tasks never raise, and a worker
        # that dies shows up as a failed image in the manifest, so worker logs stay quiet unless --debug
        quiet = logging.getLogger().level > logging.DEBUG
        cluster = LocalCluster(n_workers=n, threads_per_worker=threads_per_worker, processes=True,
                               dashboard_address=":0", silence_logs=logging.CRITICAL if quiet else logging.INFO)
    try:
        with _quiet_distributed(), Client(cluster) as client:
            yield client, n_gpus
    finally:
        with _quiet_distributed():
            cluster.close()


@contextlib.contextmanager
def _quiet_distributed() -> Iterator[None]:
    """The scheduler of a LocalCluster lives in our process and logs every worker and client at INFO; keep errors.

    Left alone when the root logger is at DEBUG (``napari-xt --debug``), where those lines are wanted.
    """
    logger = logging.getLogger("distributed")
    before = logger.level
    if logging.getLogger().level > logging.DEBUG:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


def run_batch(items: Sequence[InputItem], out_dir: str | os.PathLike, template: PredictRequest, *,
              scheduler: str = "local", workers: int | None = None, threads_per_worker: int = 1,
              overwrite: bool = False, on_start: Callable[[Any, int], None] | None = None,
              on_record: Callable[[dict], None] | None = None, describe: Describe | None = None) -> BatchResult:
    """Run every image of ``items`` into ``<out_dir>/<stem>.xt.zarr`` on a dask cluster; never raises for one image.

    ``on_start(client, total)`` is called once the cluster is up, ``on_record(record)`` as each image finishes (and
    for inputs that failed before submission). The manifest is rewritten after every image. On KeyboardInterrupt
    the images not finished are recorded as ``cancelled`` and the interrupt is re-raised. ``template`` is the
    request every image shares (its image and out are set per image); ``describe`` words errors for the manifest.
    """
    describe = describe or plain_description
    t0 = time.perf_counter()
    if os.path.isfile(template.model):  # workers elsewhere have another working directory
        template = template.with_(model=os.path.abspath(template.model))
    ledger = _Ledger(out_dir, [os.path.abspath(i.path) for i in items], on_record)
    for i, item in enumerate(items):
        if item.error:
            ledger.set(i, make_record(ledger.paths[i], ledger.stores[i], "failed", error=item.error,
                                      finished=now_iso()), announce=False)
    ledger.write()
    n_workers = 0
    if ledger.pending():
        torch_threads = threads_per_worker if scheduler == "local" else None
        device = template.run.device
        with connect(scheduler, workers, threads_per_worker, device) as (client, n_gpus):
            n_workers = len(client.nthreads())
            try:
                client.run(warm_up)
            except Exception as err:
                raise RuntimeError(f"the dask workers cannot run napari-xt ({describe(err)}); install napari-xt "
                                   "in the workers' environment") from err
            if on_start:
                on_start(client, len(items))
            ledger.announce_all()
            _gather(client, ledger, template, (overwrite, n_gpus, torch_threads, describe), describe)
    else:
        ledger.announce_all()
    return BatchResult(ledger.finished(), ledger.write(), time.perf_counter() - t0, n_workers)


class _Ledger:
    """The records of one batch in input order, mirrored to the manifest on disk after every change."""

    def __init__(self, out_dir, paths: list[str], on_record: Callable[[dict], None] | None):
        self.out_dir = Path(os.path.abspath(out_dir))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.paths = paths
        names = store_paths(paths, self.out_dir)
        self.stores = [names[p] for p in paths]
        self.records: list[dict | None] = [None] * len(paths)
        self.on_record = on_record

    def set(self, i: int, record: dict, announce: bool = True) -> None:
        self.records[i] = record
        self.write()
        if announce and self.on_record:
            self.on_record(record)

    def announce_all(self) -> None:
        """Tell the caller about the records made before the cluster was up (inputs that were never submitted)."""
        for record in self.finished():
            if self.on_record:
                self.on_record(record)

    def pending(self) -> list[int]:
        return [i for i, r in enumerate(self.records) if r is None]

    def finished(self) -> list[dict]:
        return [r for r in self.records if r is not None]

    def write(self) -> Path:
        return write_manifest(self.out_dir, self.finished())


def _gather(client: Any, ledger: _Ledger, template: PredictRequest, task_args: tuple, describe: Describe) -> None:
    """One task per pending image; records are taken in the order images finish, not the order they were sent."""
    from distributed import as_completed

    token = uuid.uuid4().hex[:8]
    futures = {}
    for i in ledger.pending():
        store = ledger.stores[i]
        future = client.submit(process_image, ledger.paths[i], str(store), template, *task_args,
                               pure=False, key=f"napari-xt-{store.name}-{token}")
        futures[future] = i
    try:
        for future in as_completed(futures):
            i = futures[future]
            ledger.set(i, _result_of(future, ledger.paths[i], ledger.stores[i], describe))
    except BaseException:
        unfinished = ledger.pending()
        client.cancel([f for f, i in futures.items() if i in unfinished])
        for i in unfinished:
            ledger.records[i] = make_record(ledger.paths[i], ledger.stores[i], "cancelled", finished=now_iso(),
                                            error="the batch was interrupted; re-run the command to resume")
        ledger.write()
        raise


def _result_of(future: Any, path: str, store: Path, describe: Describe) -> dict:
    """The task's record; a task that died (killed worker, lost connection) becomes a failed record here."""
    try:
        return future.result()
    except Exception as err:
        return make_record(path, store, "failed", error=describe(err), finished=now_iso())
