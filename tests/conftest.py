"""Shared test fixtures: every test that takes ``loop_name`` runs on both loops.

* ``run(fn, *args)``: ``csp.run`` on the parametrized loop.
* ``arun(fn, *args)``: a plain ``asyncio.Runner`` on that loop (csp outside csp.run).
* ``srun(seed, fn, *args)``: ``arun``, once in asyncio's FIFO order and once (on the
  asyncio loop) under the schedule fuzzer of tests/schedfuzz.py with that seed;
* async tests marked ``@pytest.mark.asyncio`` run on both loops (the
  ``pytest_asyncio_loop_factories`` hook below).

Comparing a goroutine with the Tasks asyncio steps (plain, a subclass, eager) is the
differential harness's job: tests/differential.py.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import schedfuzz

import csp

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]

# the controllable clock: fixtures ``clock`` and ``vrun`` (tests/vclock.py)
pytest_plugins = ["vclock"]

LOOPS = ["asyncio", "uvloop"] if uvloop is not None else ["asyncio"]


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        assert uvloop is not None
        return uvloop.new_event_loop
    return asyncio.new_event_loop


@pytest.fixture(autouse=True)
def _timeout_thread_never_calls_in() -> None:
    """pytest-timeout's watchdog (a threading.Timer per test, timeout_method=thread)
    never calls into a loop: deadlock detection may decide while it lives."""
    from csp._deadlock import ignore_thread

    for t in threading.enumerate():
        if t.name.startswith("pytest_timeout "):
            ignore_thread(t)


@pytest.fixture(params=LOOPS)
def loop_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def run(loop_name: str) -> Callable[..., Any]:
    def _run(fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
        return csp.run(fn, *args, loop=loop_name)

    return _run


@pytest.fixture
def arun(loop_name: str) -> Callable[..., Any]:
    def _arun(fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
        with asyncio.Runner(loop_factory=loop_factory(loop_name)) as runner:
            return runner.run(fn(*args))

    return _arun


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Async tests marked ``@pytest.mark.asyncio`` run once per loop."""
    return {name: loop_factory(name) for name in LOOPS}


@pytest.fixture(params=["fifo", "fuzz"])
def srun(request: pytest.FixtureRequest, arun: Callable[..., Any],
         loop_name: str) -> Callable[..., Any]:
    """``srun(seed, fn, *args)``: run on the parametrized loop, in asyncio's FIFO order
    or (on the asyncio loop) under the schedule fuzzer with that seed."""
    if request.param == "fifo":
        return lambda seed, fn, *args: arun(fn, *args)
    if loop_name != "asyncio":
        pytest.skip("uvloop's ready queue cannot be shuffled")
    return lambda seed, fn, *args: schedfuzz.arun_fuzzed(loop_name, seed, fn, *args)
