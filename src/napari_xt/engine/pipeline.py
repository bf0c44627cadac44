"""The stages after the model: post-processing and store writes on their own threads, behind bounded queues.

Why: on a GPU the model is a few ms per region while argmax, codecs and file writes are CPU work; done one after the
other on one thread they capped the engine at ~12 regions/s whatever the GPU. Here the compute thread (the run's
iterator) hands each batch's outputs to a post-processing thread (argmax/softmax/detection decoding; GIL released in
numpy and torch) and from there to a writer thread (the store; zstd and file writes release the GIL too), so all
three overlap. The queues are bounded (``depth`` batches each): memory stays bounded and a slow disk slows the model
instead of filling RAM.

Rules kept from the serial engine:
* a region's :class:`RegionResult` is produced by the writer only after ``store.write_region`` returned, i.e. after
  its data and then its done flag are on disk (kill -9 + resume stays exact: what is not done is recomputed);
* results come out in the order the compute thread submitted them (one FIFO writer);
* a failure in a stage stops the pipeline: later jobs are dropped, never half-written, and the error surfaces in
  the compute thread as the typed :class:`StoreWriteError` (disk full, permissions) or as the stage's own error;
* ``cancel()`` drops the jobs still queued (the stage at work finishes its job): a cancelled run stops within one
  batch, and what was dropped is simply not done (``--resume`` computes it).

The caller reads results with :meth:`Pipeline.results` (blocks; ends once the pipeline is closed and drained) when
the compute runs on a thread of its own, or with :meth:`Pipeline.ready` between batches on the one-thread path.
"""

from __future__ import annotations

import errno
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import StoreError
from .priority import lower_this_thread

__all__ = ["Pipeline", "StoreWriteError"]

_STOP = object()
_END = object()  # put on the results queue after the last result of a threaded pipeline


class StoreWriteError(StoreError):
    """The store could not take a region's results (disk full, permissions, a vanished folder).

    The run stops; every region reported done before is on disk and marked done, so the same command with
    ``--resume`` continues once the cause is fixed.
    """

    def __init__(self, path: Any, region_id: int | None, cause: BaseException):
        why = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause) or type(cause).__name__
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            why = "no space left on the device"
        where = f"region {region_id}" if region_id is not None else "results"
        super().__init__(f"could not write {where} to the result store {path}: {why}. The regions finished so far "
                         f"are kept; run again with resume once this is fixed.", path)
        self.region_id = region_id
        self.cause = cause


class Pipeline:
    """``submit(job)`` from the compute thread; ``post(job)`` then ``write(job) -> [results]`` run on two threads,
    and the caller's thread takes the results from :meth:`results`.

    ``threaded=False`` runs both inline in ``submit`` (the one-thread reference path the tests compare against).
    ``busy`` holds each stage's busy seconds (benchmarks). ``nice`` > 0 runs the two stage threads that much nicer
    than the caller (a viewer's run: ``RunOptions.low_priority``).
    """

    def __init__(self, post: Callable[[Any], Any], write: Callable[[Any], list], depth: int = 2,
                 threaded: bool = True, nice: int = 0) -> None:
        self._post, self._write = post, write
        self._nice = nice  # the stage threads' priority below the caller's (engine/priority.py)
        self._threaded = threaded
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._failed = threading.Event()
        self._dropping = threading.Event()  # failed or cancelled: queued jobs are skipped
        self._written = threading.Event()  # set once a first result is on disk
        self.busy = {"post": 0.0, "write": 0.0}
        self._threads: list[threading.Thread] = []
        if threaded:
            depth = max(1, int(depth))
            self._q_post: queue.Queue = queue.Queue(maxsize=depth)
            self._q_write: queue.Queue = queue.Queue(maxsize=depth)
            self._threads = [
                threading.Thread(target=self._loop, args=(self._q_post, self._run_post, self._q_write),
                                 name="napari-xt-post", daemon=True),
                threading.Thread(target=self._loop, args=(self._q_write, self._run_write, None),
                                 name="napari-xt-write", daemon=True),
            ]
            for t in self._threads:
                t.start()

    # -- stage bodies ------------------------------------------------------------------------------------------
    def _run_post(self, job: Any) -> Any:
        t0 = time.perf_counter()
        out = self._post(job)
        self.busy["post"] += time.perf_counter() - t0
        return out

    def _run_write(self, job: Any) -> None:
        t0 = time.perf_counter()
        for result in self._write(job):
            self._done.put(result)
            self._written.set()
        self.busy["write"] += time.perf_counter() - t0

    def _loop(self, inbox: queue.Queue, body: Callable[[Any], Any], outbox: queue.Queue | None) -> None:
        lower_this_thread(self._nice)  # the store's writer pool, started from here, inherits it
        while True:
            job = inbox.get()
            if job is _STOP:
                if outbox is not None:
                    self._put(outbox, _STOP)
                else:
                    self._done.put(_END)
                return
            if self._dropping.is_set():
                continue  # drain without working: the run is stopping, nothing more is written
            try:
                out = body(job)
            except BaseException as err:  # handed to the compute thread, which raises it
                self._fail(err)
                continue
            if outbox is not None:
                self._put(outbox, out)

    def _fail(self, err: BaseException) -> None:
        self._error = err
        self._failed.set()
        self._dropping.set()

    def _put(self, q: queue.Queue, item: Any) -> None:
        while True:  # never block forever on a queue whose consumer died
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._dropping.is_set() and item is not _STOP:
                    return

    # -- the compute thread's side -----------------------------------------------------------------------------
    def check(self) -> None:
        """Raise the first stage error, if any (the compute thread calls this between batches)."""
        if self._error is not None:
            raise self._error

    def submit(self, job: Any) -> None:
        """Queue a job (blocks while the post stage is ``depth`` jobs behind); raises a stage's error."""
        self.check()
        if not self._threaded:
            out = self._run_post(job)
            try:
                self._run_write(out)
            except BaseException as err:
                self._fail(err)
                raise
            return
        self._put(self._q_post, job)
        self.check()

    def cancel(self) -> None:
        """Drop the jobs still queued; a stage's job at work is finished (results stay exact: only done is done)."""
        self._dropping.set()

    def wait_written(self, timeout: float = 30.0) -> None:
        """Block until a first result is on disk (or a stage failed, the pipeline was cancelled, or ``timeout``).

        The compute thread calls this once, after a run's one-region first batch: on a machine with few cores the
        next batch's compute would otherwise slow down the writing of the viewer's first overlay.
        """
        deadline = time.perf_counter() + timeout
        while self._threaded and not self._written.is_set() and not self._dropping.is_set():
            if time.perf_counter() > deadline:
                return
            self._written.wait(0.05)

    def results(self) -> Iterator[Any]:
        """Every result as soon as it is on disk, in submission order, until the (threaded) pipeline is closed."""
        while True:
            item = self._done.get()
            if item is _END:
                return
            yield item

    def ready(self) -> Iterator[Any]:
        """Results whose data are on disk, in submission order; never waits."""
        while True:
            try:
                item = self._done.get_nowait()
            except queue.Empty:
                return
            if item is not _END:
                yield item

    def finish(self) -> Iterator[Any]:
        """Wait for every queued job, yield the remaining results, then raise a stage's error if there was one."""
        self.close()
        yield from self.ready()
        self.check()

    def close(self) -> None:
        """Stop the threads after the queued jobs (or at once after a failure); safe to call twice."""
        if self._threaded and self._threads:
            self._put(self._q_post, _STOP)
            for t in self._threads:
                t.join()
            self._threads = []
