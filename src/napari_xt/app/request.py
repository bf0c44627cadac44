"""What a prediction is asked to do, as plain frozen dataclasses: the CLI, batch workers and the dock build these.

No torch here, so the dock builds a request on the main thread and hands it over typed, never as a dict of strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..engine.options import PlanOptions, RunOptions

__all__ = ["PlanOptions", "PredictRequest", "RunOptions", "make_request"]


@dataclass(frozen=True)
class PredictRequest:
    """One image through one model into one result store.

    ``resume`` continues a store made by the same model, image and plan; ``overwrite`` replaces a store (never
    anything that is not a store). Neither set and ``out`` taken: the run is refused before any work. A resume
    repairs the store first (done regions whose chunks are missing are redone); ``verify`` makes it also decode
    every chunk, to redo the regions of chunks that are there but damaged.
    """

    image: str
    model: str
    out: str
    plan: PlanOptions = field(default_factory=PlanOptions)
    run: RunOptions = field(default_factory=RunOptions)
    resume: bool = False
    overwrite: bool = False
    verify: bool = False

    def with_(self, **changes: object) -> PredictRequest:
        """A copy with top-level fields changed (``image``, ``out``, ``resume``, ...)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def with_plan(self, **changes: object) -> PredictRequest:
        return replace(self, plan=replace(self.plan, **changes))  # type: ignore[arg-type]

    def with_run(self, **changes: object) -> PredictRequest:
        return replace(self, run=replace(self.run, **changes))  # type: ignore[arg-type]


_PLAN_FIELDS = frozenset(PlanOptions.__dataclass_fields__)
_RUN_FIELDS = frozenset(RunOptions.__dataclass_fields__)


def make_request(image: str, model: str, out: str, *, resume: bool = False, overwrite: bool = False,
                 verify: bool = False, **options: object) -> PredictRequest:
    """A request from flat option names (``level=1, batch_size=2``): each goes to the plan or the run options.

    For scripts and notebooks; an unknown name is a ``TypeError`` naming it, never silently dropped.
    """
    unknown = set(options) - _PLAN_FIELDS - _RUN_FIELDS
    if unknown:
        raise TypeError(f"unknown request option(s) {sorted(unknown)}; plan options: {sorted(_PLAN_FIELDS)}, run "
                        f"options: {sorted(_RUN_FIELDS)}")
    plan_fields = {k: v for k, v in options.items() if k in _PLAN_FIELDS}
    for key in ("roi", "focus"):  # frozen all the way down: a request is hashable and never shares a caller's list
        value = plan_fields.get(key)
        if isinstance(value, list | tuple):
            plan_fields[key] = tuple(tuple(v) if isinstance(v, list | tuple) else v for v in value)
    plan = PlanOptions(**plan_fields)  # type: ignore[arg-type]
    run = RunOptions(**{k: v for k, v in options.items() if k in _RUN_FIELDS})  # type: ignore[arg-type]
    return PredictRequest(image=str(image), model=str(model), out=str(out), plan=plan, run=run, resume=resume,
                          overwrite=overwrite, verify=verify)
