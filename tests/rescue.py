"""Deadlock tests that cannot hang and need no sleeps (tests/test_runtime.py,
tests/test_deadlock.py): ``run_or_rescue`` and ``after_a_look``."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import csp
from csp import _sched
from csp._deadlock import Watch, ignore_thread


def run_or_rescue(loop_name: str, main: Callable[[csp.Chan[Any]], Any], limit: float) -> str:
    """csp.run ``main(stuck)``, where main ends up blocked on ``stuck.recv()``.

    Returns "deadlock" if run raised DeadlockError. If the detector missed the
    deadlock, a watchdog thread closes ``stuck`` after ``limit`` seconds and this
    returns "missed" instead of hanging (pytest-timeout cannot interrupt a uvloop
    loop parked in epoll_wait)."""
    box: dict[str, Callable[[], None]] = {}

    async def wrapper() -> str:
        loop = asyncio.get_running_loop()
        stuck = csp.Chan[Any]()
        box["rescue"] = lambda: loop.call_soon_threadsafe(stuck.close)
        await main(stuck)
        return "missed"

    def rescue() -> None:
        try:
            box["rescue"]()
        except (KeyError, RuntimeError):  # not started yet, or loop already closed
            pass

    watchdog = threading.Timer(limit, rescue)
    # (a thread that may call in forbids a verdict: this one only rescues a miss)
    ignore_thread(watchdog)
    watchdog.start()
    try:
        return str(csp.run(wrapper, loop=loop_name))
    except csp.DeadlockError:
        return "deadlock"
    finally:
        watchdog.cancel()
        watchdog.join()


def after_a_look(action: Callable[[], object]) -> threading.Thread:
    """Called by main under ``csp.run`` just before it parks: a thread (that deadlock
    detection ignores) waits until the watch has finished a look with everything
    parked, without a verdict, then calls ``action()`` (which may release main).
    Without a look in 5 s it calls ``action()`` anyway (the test then fails on what
    main got). Join the thread after main resumed."""
    watch = _sched.scheduler().on_all_parked.__self__  # type: ignore[union-attr]
    assert isinstance(watch, Watch)
    start = watch.checks

    def body() -> None:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and not (watch.checks > start and not watch.checking):
            time.sleep(0.001)  # (polls a condition: the look is on the loop's thread)
        action()

    t = threading.Thread(target=body, name="after_a_look")
    ignore_thread(t)
    t.start()
    return t
