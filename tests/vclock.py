"""Time-based tests on both loops: virtual time on asyncio, real time on uvloop.

On asyncio, ``vrun`` is ``csp.testing.run``: the library's virtual-time bubble
(``csp._vtime.VirtualTimeLoop``, whose clock starts at 0.0 and jumps to the next timer
when nothing can run and no I/O is ready). Timers therefore fire in order, at exactly
their scheduled times, instantly and independently of machine load.

uvloop's clock cannot be replaced that way, so on uvloop the same tests run in real
time with tiny durations and assert only what cannot flake (orderings, counts, bounds
in one direction); ``Clock.virtual`` tells a test which case it is in.

Fixtures (a plugin of tests/conftest.py): ``clock`` and ``vrun(fn, *args)`` (csp.run on
the parametrized loop, a ``csp.testing.run`` bubble on asyncio). Helper:
``pending_timers(loop)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import pytest

import csp
import csp.testing


@dataclass
class Clock:
    virtual: bool
    loop_name: str


def pending_timers(loop: asyncio.AbstractEventLoop) -> int:
    """Timers still scheduled (not cancelled) on a loop made by csp.run or csp.testing.run."""
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
def vrun(loop_name: str) -> Callable[..., Any]:
    """``csp.run`` on the parametrized loop; on asyncio, a ``csp.testing.run`` bubble."""

    def _run(fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
        if loop_name == "asyncio":
            return csp.testing.run(fn, *args)
        return csp.run(fn, *args, loop=loop_name)

    return _run
