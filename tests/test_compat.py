"""csp/_compat.py: every private CPython/uvloop internal csp uses works on this Python.

CI runs this file on every supported Python (3.11, 3.12, 3.13): a release that moves
an internal fails here, in one place, instead of somewhere deep in the scheduler.
"""

from __future__ import annotations

import asyncio
import sys

import pytest

from csp import _compat


def test_selftest_passes_on_this_python() -> None:
    """Every probe of csp._compat works on this interpreter."""
    assert _compat.selftest() == []


def test_current_task_fast_path_where_expected() -> None:
    """On 3.11-3.13 asyncio keeps the current task in a dict that csp writes directly
    (the fast path the benchmarks measure); elsewhere the functions are used."""
    if (3, 11) <= sys.version_info < (3, 14):
        assert _compat.CURRENT_TASKS_DICT
        assert _compat.current_tasks is asyncio.tasks._current_tasks  # type: ignore[attr-defined]


def test_task_switch_fallback_makes_tasks_current() -> None:
    """The fallback (``_enter_task``/``_leave_task``) has the dict's interface."""
    sw = _compat._TaskSwitch()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        other = asyncio.ensure_future(asyncio.sleep(0))
        del _compat.current_tasks[loop]
        sw[loop] = other
        assert asyncio.current_task() is other and sw.get(loop) is other
        del sw[loop]
        _compat.current_tasks[loop] = me
        assert asyncio.current_task() is me
        await other

    asyncio.run(main())


def test_abandon_task_ends_a_task_without_running_it() -> None:
    """abandon_task marks a parked Task cancelled without stepping its coroutine and
    without the 'Task was destroyed but it is pending!' report."""
    ran: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        never: asyncio.Future[None] = loop.create_future()

        async def parked() -> None:
            try:
                await never
            finally:
                ran.append("finally")

        t = asyncio.ensure_future(parked())
        await asyncio.sleep(0)
        _compat.abandon_task(t)
        assert t.done() and t.cancelled()
        await asyncio.sleep(0)
        assert ran == []
        t.get_coro().close()  # type: ignore[union-attr]
        assert ran == ["finally"]

    asyncio.run(main())


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_loop_queues(loop_kind: str) -> None:
    """The asyncio loop shows its ready queue, timers and selector; uvloop does not."""
    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        q = _compat.loop_queues(loop)
        if loop_kind == "uvloop":
            assert q is None
        else:
            assert q is not None
            ready, scheduled, selector = q
            loop.call_soon(lambda: None)
            assert len(ready) == 1 and scheduled == [] and selector.get_map() is not None
    finally:
        loop.close()
