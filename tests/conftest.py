"""Shared test fixtures: every test that takes ``loop_name`` runs on both loops.

* ``run(fn, *args)``: ``csp.run`` on the parametrized loop.
* ``arun(fn, *args)``: a plain ``asyncio.Runner`` on that loop (csp outside csp.run).
* ``srun(seed, fn, *args)``: ``arun``, once in asyncio's FIFO order and once (on the
  asyncio loop) under the schedule fuzzer of tests/schedfuzz.py with that seed;
* ``gc_off``: the cycle collector off for the test (what must be freed is freed by
  reference counting: no cycle keeps it);
* ``park_dead(fn, *args)``: a task left parked by a loop closed by hand (a dead waiter);
* async tests marked ``@pytest.mark.asyncio`` run on both loops (the
  ``pytest_asyncio_loop_factories`` hook below).

Comparing a goroutine with the Tasks asyncio steps (plain, a subclass, eager) is the
differential harness's job: tests/differential.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import schedfuzz

import csp
from csp import _compat, _waiter

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]

# time-based tests: fixtures ``clock`` and ``vrun`` (tests/vclock.py; virtual time on
# asyncio through csp.testing.run)
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
    from csp import _threads
    from csp._deadlock import ignore_thread

    for t in threading.enumerate():
        if t.name.startswith("pytest_timeout "):
            ignore_thread(t)
            _threads.ignore_thread(t)  # nor into csp: tests start in single mode
    _threads.maybe_single()


if os.environ.get("CSP_TEST_SHARED") == "1":
    # The whole suite in shared mode (csp._threads): every operation takes the lock.
    from csp import _threads as _threads_mode

    _threads_mode.force_shared()


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


@pytest.fixture
def gc_off() -> Iterator[None]:
    """The cycle collector is off during the test: an object that dies in it was freed
    by reference counting, so no cycle held it."""
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@pytest.fixture
def park_dead(loop_name: str) -> Iterator[Callable[..., asyncio.Task[Any]]]:
    """``park_dead(fn, *args, go=False)``: run ``fn(*args)`` as a Task (a goroutine with
    ``go=True``) of a fresh loop of the parametrized kind until it parks on a csp
    waiter, then close that loop by hand with the task still parked, as a program does
    that closes a loop without cancelling its tasks. Returns the dead task. At teardown
    the dead tasks are marked done, so that none reports "destroyed but pending"."""
    dead: list[asyncio.Task[Any]] = []

    def _park(fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any,
              go: bool = False) -> asyncio.Task[Any]:
        loop = loop_factory(loop_name)()

        async def start() -> asyncio.Task[Any]:
            t = csp.go(fn, *args) if go else asyncio.ensure_future(fn(*args))
            for _ in range(3):
                await asyncio.sleep(0)
            return t

        t = loop.run_until_complete(start())
        w = _waiter.parked_on(t)
        assert w is not None and w.state == _waiter.PENDING, "it did not park in csp"
        loop.close()
        dead.append(t)
        return t

    yield _park
    for t in dead:
        with contextlib.suppress(RuntimeError):  # (its loop is closed: no callbacks)
            _compat.abandon_task(t)
