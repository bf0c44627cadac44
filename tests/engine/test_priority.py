"""``call_at_lower_priority``: the dock's preparation runs on a thread of its own, nicer than the caller (issue 25),
and hands back its result or its error as if called directly."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from napari_xt.engine.priority import call_at_lower_priority


def _nice_of_this_thread() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_the_result_comes_back_and_the_caller_keeps_its_priority():
    seen: dict[str, object] = {}

    def work(a, b=0):
        seen["thread"] = threading.current_thread()
        return a + b

    before = _nice_of_this_thread() if sys.platform.startswith("linux") else None
    assert call_at_lower_priority(work, 2, b=3, by=4) == 5
    assert seen["thread"] is not threading.current_thread()
    if before is not None:
        assert _nice_of_this_thread() == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_the_work_runs_nicer_than_the_caller():
    before = _nice_of_this_thread()
    inside = call_at_lower_priority(_nice_of_this_thread, by=3)
    assert inside == min(19, before + 3)


def test_an_error_is_raised_in_the_caller_as_itself():
    class Mistake(ValueError):
        pass

    def work():
        raise Mistake("bad region size")

    with pytest.raises(Mistake, match="bad region size"):
        call_at_lower_priority(work)
