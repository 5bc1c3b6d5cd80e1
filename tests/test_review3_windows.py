"""Review 3: a goroutine's step run by csp (the drain) that ends with something only
a Task used to handle: a Future it now awaits, or its return. (Then, the Task took the
outcome over in a later hand-over; now csp awaits the Future itself and sets the
Task's outcome inside the step.) Another task resumed in the same drain must see the
goroutine's Task exactly as a Task stepped by asyncio would be: done at once after the
return, and a cancel message must reach the Future it awaits.

The reference is a Task that asyncio alone steps (conftest.AsyncioDrivenTask); a plain
``asyncio.create_task`` Task is driven by csp once it parks, like a goroutine.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import loop_factory, reference_task

import csp


async def _window(kind: str, variant: str) -> list[Any]:
    trace: list[Any] = []
    a, b = csp.Chan[int](), csp.Chan[int]()
    box: list[asyncio.Task[Any]] = []

    async def victim() -> int:
        t = asyncio.current_task()
        assert t is not None
        await a.recv()
        if variant == "return":
            return 5
        try:
            if variant == "sleep":
                await asyncio.sleep(0.01)
            else:
                await asyncio.get_running_loop().create_future()
            trace.append("returned")
        except asyncio.CancelledError as e:
            trace.append(("cancelled", e.args, t.cancelling()))
            raise
        return 0

    async def killer() -> None:
        await b.recv()  # resumed in the same drain, right after the victim
        t = box[0]
        trace.append(("victim done", t.done()))
        trace.append(("cancel", t.cancel("kill"), t.cancelling()))

    if kind == "go":
        t, k = csp.go(victim), csp.go(killer)
    elif kind == "ref":
        t, k = reference_task(victim()), reference_task(killer())
    else:
        t, k = asyncio.create_task(victim()), asyncio.create_task(killer())
    box.append(t)
    for _ in range(5):
        await asyncio.sleep(0)
    await a.send(1)
    await b.send(2)  # the victim and then the killer run in one drain
    async with asyncio.timeout(1):
        await asyncio.wait([t, k])
    if t.cancelled():
        try:
            t.result()
        except asyncio.CancelledError as e:
            trace.append(("outcome cancelled", e.args))
    else:
        trace.append(("outcome", t.result()))
    return trace


def _both(loop_name: str, variant: str) -> dict[str, list[Any]]:
    out = {}
    for kind in ("go", "task", "ref"):  # ref: a Task that asyncio alone steps
        with asyncio.Runner(loop_factory=loop_factory(loop_name)) as r:
            out[kind] = r.run(_window(kind, variant))
    assert out["task"] == out.pop("ref")
    return out


@pytest.mark.parametrize("variant", ["sleep", "future"])
def test_cancel_msg_kept_when_cancelled_before_task_takes_over_future(
        loop_name: str, variant: str) -> None:
    """Invariant: ``t.cancel("kill")`` of a goroutine whose direct step just awaited a
    Future (asyncio.sleep, a bare Future) raises CancelledError("kill") at that await
    and the task ends cancelled with "kill", as for a plain Task."""
    got = _both(loop_name, variant)
    assert got["task"] == [("victim done", False), ("cancel", True, 1),
                           ("cancelled", ("kill",), 1), ("outcome cancelled", ("kill",))]
    assert got["go"] == got["task"]


def test_cancel_count_same_when_cancelled_before_task_takes_over_future(
        loop_name: str) -> None:
    """What already matches in that window: cancel() returns True, one CancelledError
    at the await, cancelling() == 1, the task ends cancelled."""
    got = _both(loop_name, "sleep")
    strip = [e[:1] + e[2:] if e[0] in ("cancelled", "outcome cancelled") else e
             for e in got["go"]]
    assert strip == [("victim done", False), ("cancel", True, 1), ("cancelled", 1),
                     ("outcome cancelled",)]


def test_goroutine_returned_in_direct_step_is_done_for_others(loop_name: str) -> None:
    """Invariant (plain Task): once a task's coroutine has returned, other tasks see it
    done() and cancel() returns False, leaving cancelling() at 0."""
    got = _both(loop_name, "return")
    assert got["task"] == [("victim done", True), ("cancel", False, 0), ("outcome", 5)]
    assert got["go"] == got["task"]
