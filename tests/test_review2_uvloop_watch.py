"""Review 2: csp.run's deadlock check on uvloop counts ``call_soon`` calls while it
looks (an instance attribute shadows ``call_soon``), so that a chain of callbacks is
not taken for a deadlock.

Invariants: DeadlockError is never a false positive (API.md) and a real deadlock is
still reported; the shadowing attribute never outlives a check (after csp.run returns,
raises a panic or a DeadlockError, the loop's ``call_soon`` is the class's again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import csp


def _chain(schedule: str) -> Callable[[], Any]:
    """main blocks in csp while 10 loop callbacks (no task) run one after another,
    each scheduled by the previous one with ``schedule``; the last starts a goroutine
    that releases main."""
    async def main() -> str:
        loop = asyncio.get_running_loop()
        ch = csp.Chan[str]()

        def step(n: int) -> None:
            if not n:
                csp.go(ch.send, "released")
            elif schedule == "call_soon_threadsafe":
                loop.call_soon_threadsafe(step, n - 1)
            elif schedule == "call_later(0)":
                loop.call_later(0, step, n - 1)
            elif schedule == "call_at(now)":
                loop.call_at(loop.time(), step, n - 1)
            else:
                loop.call_soon(step, n - 1)

        loop.call_soon(step, 10)
        return (await ch.recv()) or ""

    return main


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_call_soon_chain_is_not_a_deadlock(loop: str) -> None:
    """A chain of call_soon callbacks that ends by releasing main: no DeadlockError."""
    assert csp.run(_chain("call_soon"), loop=loop) == "released"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_call_soon_threadsafe_chain_is_not_a_deadlock(loop: str) -> None:
    """The same chain scheduled with ``call_soon_threadsafe`` (what thread-safe
    libraries and concurrent.futures callbacks use, also from the loop's thread)."""
    assert csp.run(_chain("call_soon_threadsafe"), loop=loop) == "released"


@pytest.mark.parametrize("schedule", ["call_later(0)", "call_at(now)"])
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_zero_delay_timer_chain_is_not_a_deadlock(loop: str, schedule: str) -> None:
    """The same chain scheduled with ``call_later(0, ...)`` / ``call_at(loop.time())``
    (a pending timer means no deadlock, API.md)."""
    assert csp.run(_chain(schedule), loop=loop) == "released"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_deadlock_still_reported_after_a_chain_that_wakes_nobody(loop: str) -> None:
    """A real deadlock is reported once a 50-callback chain ends without waking
    anyone, and the loop's call_soon is the class's again afterwards."""
    seen: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        lp = asyncio.get_running_loop()
        seen.append(lp)

        def step(n: int) -> None:
            if n:
                lp.call_soon(step, n - 1)

        lp.call_soon(step, 50)
        await csp.Chan[int]().recv()

    with pytest.raises(csp.DeadlockError) as ei:
        csp.run(main, loop=loop)
    assert str(ei.value).splitlines()[2] == "goroutine 1 [chan receive]:"
    assert "call_soon" not in vars(seen[0])


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_watch_removed_when_run_returns_during_a_check(loop: str) -> None:
    """main returns right after a chain released it, possibly while a check still
    looks: whatever the watch's state then, it is gone once csp.run has returned."""
    seen: list[asyncio.AbstractEventLoop] = []

    async def main() -> tuple[str, bool]:
        lp = asyncio.get_running_loop()
        seen.append(lp)
        v = await _chain("call_soon")()
        return v, "call_soon" in vars(lp)

    v, watching = csp.run(main, loop=loop)
    assert v == "released"
    assert not watching or loop == "uvloop"
    assert "call_soon" not in vars(seen[0])


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_watch_removed_after_a_panic_during_a_check(loop: str) -> None:
    """A goroutine started by the last callback of a chain panics while a check looks:
    csp.run raises the panic, and the watch is gone."""
    seen: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        lp = asyncio.get_running_loop()
        seen.append(lp)

        async def boom() -> None:
            raise KeyError("panic")

        def step(n: int) -> None:
            if n:
                lp.call_soon(step, n - 1)
            else:
                csp.go(boom)

        lp.call_soon(step, 10)
        await csp.Chan[int]().recv()

    with pytest.raises(KeyError, match="panic"):
        csp.run(main, loop=loop)
    assert "call_soon" not in vars(seen[0])


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_watch_off_between_checks(loop: str) -> None:
    """After a check ended (a callback chain woke main), the program runs on with the
    class's call_soon: later call_soon calls are not counted."""
    async def main() -> tuple[str, bool, int]:
        lp = asyncio.get_running_loop()
        v = await _chain("call_soon")()
        for _ in range(10):  # the check sees main running and ends
            await asyncio.sleep(0)
        return v, "call_soon" in vars(lp), vars(lp).get("_csp_soon", 0)

    assert csp.run(main, loop=loop) == ("released", False, 0)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_watch_keeps_a_call_soon_the_program_installed(loop: str) -> None:
    """A program (a tracing/instrumentation helper) wraps ``loop.call_soon`` on the
    instance; a deadlock check that looks and ends must leave that wrapper in place."""
    async def main() -> tuple[str, bool]:
        lp = asyncio.get_running_loop()
        calls = [0]

        def wrapper(cb: Any, *args: Any, context: Any = None) -> asyncio.Handle:
            calls[0] += 1
            return type(lp).call_soon(lp, cb, *args, context=context)

        lp.call_soon = wrapper  # type: ignore[method-assign]
        v = await _chain("call_soon")()  # a check looks while the chain runs
        for _ in range(10):
            await asyncio.sleep(0)
        return v, vars(lp).get("call_soon") is wrapper

    assert csp.run(main, loop=loop) == ("released", True)
