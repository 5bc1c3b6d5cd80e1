"""A controllable clock for time-based tests.

``VirtualClockLoop`` is csp.run's asyncio loop whose ``time()`` is a virtual clock: when
the loop would sleep waiting for its next timer and no I/O is ready, the clock jumps to
that timer instead (like the ``looptime`` package). Timers therefore fire in order, at
exactly their scheduled times, instantly and independently of machine load.

uvloop's clock cannot be replaced that way, so on uvloop the same tests run in real
time with tiny durations and assert only what cannot flake (orderings, counts, bounds
in one direction); ``Clock.virtual`` tells a test which case it is in.

Fixtures (import them into a test module): ``clock`` and ``vrun(fn, *args)`` (csp.run on
the parametrized loop, virtual on asyncio).
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import pytest

import csp
import csp._runtime as runtime

START = 1000.0


class _JumpSelector:
    """Wraps the loop's selector: a wait that would time out jumps the clock instead."""

    def __init__(self, inner: selectors.BaseSelector, loop: VirtualClockLoop) -> None:
        self._inner = inner
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None or timeout <= 0:
            return self._inner.select(timeout)
        events = self._inner.select(0)
        if events:
            return events
        loop = self._loop
        target = loop._vnow + timeout
        scheduled = loop._scheduled  # type: ignore[attr-defined]
        if scheduled:  # land exactly on the next timer (no float drift)
            target = min(target, scheduled[0].when())
        loop._vnow = max(loop._vnow, target)
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class VirtualClockLoop(runtime._AsyncioLoop):
    """csp.run's asyncio loop with a virtual clock starting at ``START``."""

    def __init__(self) -> None:
        super().__init__()
        self._vnow = START
        self._selector = _JumpSelector(self._selector, self)

    def time(self) -> float:
        return self._vnow


@dataclass
class Clock:
    virtual: bool
    loop_name: str


def pending_timers(loop: asyncio.AbstractEventLoop) -> int:
    """Timers still scheduled (not cancelled) on a loop made by csp.run or VirtualClockLoop."""
    sched = getattr(loop, "_scheduled", None)
    if sched is not None:
        return sum(1 for h in sched if not h.cancelled())
    # csp.run's uvloop subclass may note one handle twice (call_at goes through
    # call_later there), so count distinct handles; uvloop fires up to half a
    # millisecond early (it rounds delays to whole ms) and a fired handle does not say
    # so, hence the slack.
    limit = loop.time() + 0.002
    handles = loop._csp_pending_timers()  # type: ignore[attr-defined]
    return len({id(h) for h in handles if hasattr(h, "when") and h.when() > limit})


@pytest.fixture
def clock(loop_name: str) -> Clock:
    return Clock(virtual=loop_name == "asyncio", loop_name=loop_name)


@pytest.fixture
def vrun(loop_name: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """``csp.run`` on the parametrized loop; on asyncio with the virtual clock."""
    if loop_name == "asyncio":
        monkeypatch.setattr(runtime, "_loop_factory", lambda name: VirtualClockLoop)

    def _run(fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
        return csp.run(fn, *args, loop=loop_name)

    return _run
