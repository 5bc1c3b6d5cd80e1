"""Review of the run-queue / direct-resumption changes in csp/_park.py.

Each test states the invariant it checks; the first and the SystemExit one exposed
bugs found in review (fixed in csp/_park.py: cancellation owed after a direct step;
Scheduler._requeue).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import pytest
from conftest import loop_factory

import csp
from csp import _sched, _waiter

# -- self-cancellation while resumed directly ---------------------------------------


@pytest.mark.asyncio
async def test_self_cancel_after_direct_wakeup_raises_at_next_await() -> None:
    """Invariant (asyncio's): ``current_task().cancel()`` inside a task makes its next
    suspension raise CancelledError, and the task ends cancelled.

    A goroutine resumed straight from the run queue is still, to its Task, parked on the
    Goroutine shim (``task._fut_waiter`` is the shim), so ``Task.cancel()`` calls
    ``Goroutine.cancel()``; ``cur`` is the waiter that just woke it (DONE), so it only
    sets ``cancel_pending`` and returns True. ``cancel_pending`` is read only by the
    next ``_resume``: when the goroutine next awaits a Future (or finishes) the Task
    takes over and the cancellation is never delivered (here the sleep returns
    normally and the task ends with a result); when it next awaits a csp op that never
    completes, it hangs instead of raising.
    """
    ch = csp.Chan[int]()
    trace: list[str] = []

    async def g() -> str:
        await ch.recv()  # first park: through the Task
        await ch.recv()  # from now on resumed directly by the drain
        me = asyncio.current_task()
        assert me is not None
        me.cancel()
        try:
            await asyncio.sleep(0.001)  # a Future: the Task takes the goroutine over
            trace.append("sleep returned")
        except asyncio.CancelledError:
            trace.append("cancelled at sleep")
            raise
        return "finished"

    t = csp.go(g)
    await ch.send(1)
    await ch.send(2)
    done, _ = await asyncio.wait([t], timeout=1)
    assert done == {t}
    assert trace == ["cancelled at sleep"]
    assert t.cancelled()


@pytest.mark.asyncio
async def test_self_cancel_in_task_path_raises_at_next_await() -> None:
    """Control for the test above: the same self-cancel before the goroutine ever
    parked in csp (its Task runs it) is delivered at the next await."""
    trace: list[str] = []

    async def g() -> None:
        me = asyncio.current_task()
        assert me is not None
        me.cancel()
        try:
            await asyncio.sleep(0)
            trace.append("sleep returned")
        except asyncio.CancelledError:
            trace.append("cancelled at sleep")
            raise

    t = csp.go(g)
    done, _ = await asyncio.wait([t], timeout=1)
    assert done == {t}
    assert trace == ["cancelled at sleep"]
    assert t.cancelled()


# -- SystemExit / KeyboardInterrupt escaping a drain --------------------------------


def _run_until_exit(loop_name: str, body: Callable[[], Any]) -> tuple[Any, Any]:
    """Run ``body()`` until SystemExit escapes the loop; return (loop, result of body)."""
    loop = loop_factory(loop_name)()
    asyncio.set_event_loop(loop)
    holder: dict[str, Any] = {}

    async def start() -> None:
        holder.update(await body())
        await asyncio.get_running_loop().create_future()  # until SystemExit escapes

    with pytest.raises(SystemExit):
        loop.run_until_complete(start())
    return loop, holder



def test_wakeups_still_run_after_systemexit_escaped_a_drain(loop_name: str) -> None:
    """Invariant (Scheduler): ``scheduled`` is True iff a drain callback is queued.

    ``sys.exit()`` in a goroutine resumed directly is re-raised by its Task's step,
    which the drain runs; the drain re-raises SystemExit/KeyboardInterrupt without
    resetting ``scheduled`` or queueing itself again. From then on every wake-up on
    that loop is appended to ``runq`` and never run: cancelling the parked goroutines
    (what asyncio.Runner.close() and csp.run's clean-up do) hangs forever. Under
    ``csp.run`` the program hangs in ``Runner.close()`` instead of exiting.
    """
    ch = csp.Chan[int]()
    d = csp.Chan[int]()

    async def body() -> dict[str, Any]:
        async def blocked() -> None:
            await ch.recv()

        async def exiter() -> None:
            await d.recv()
            await d.recv()  # resumed directly
            sys.exit(3)

        b = csp.go(blocked)
        csp.go(exiter)
        await d.send(1)
        await d.send(2)
        return {"blocked": b}

    loop, holder = _run_until_exit(loop_name, body)
    try:
        b = holder["blocked"]
        b.cancel()
        done, _ = loop.run_until_complete(asyncio.wait([b], timeout=0.5))
        assert done == {b}
        assert b.cancelled()
        assert _sched.schedulers[loop].scheduled is False
    finally:
        rest = asyncio.all_tasks(loop)
        for t in rest:
            t.cancel()
        if rest:
            loop.run_until_complete(asyncio.wait(rest, timeout=0.5))
        asyncio.set_event_loop(None)
        loop.close()


# -- READY: the shared finished future of the locks' ``async with`` ---------------------


def test_ready_future_on_many_loops_and_threads() -> None:
    """READY is usable on any loop, in any thread, one after another: awaited, gathered,
    waited on, shielded and wrapped by ensure_future; it stays finished with result None
    and logs nothing."""
    import threading
    import warnings

    results: list[object] = []

    async def use() -> None:
        mu, sem, rw = csp.Mutex(), csp.Semaphore(1), csp.RWMutex()
        r = await asyncio.gather(mu.__aenter__(), sem.__aenter__(), rw.rlocker().__aenter__())
        results.append(tuple(r))
        mu.unlock()
        sem.release()
        rw.runlock()
        done, pending = await asyncio.wait([mu.__aenter__()])
        results.append((len(done), len(pending)))
        results.append(await asyncio.shield(mu.__aexit__(None, None, None)))
        results.append(asyncio.ensure_future(mu.__aenter__()) is _waiter.READY)
        mu.unlock()
        with pytest.raises(KeyError):
            async with mu:
                raise KeyError("body")
        results.append(repr(mu))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for factory in (asyncio.new_event_loop, loop_factory("uvloop")):
            with asyncio.Runner(loop_factory=factory) as r:
                r.run(use())
        th = threading.Thread(target=asyncio.run, args=(use(),))
        th.start()
        th.join()
    assert results == [(None, None, None), (1, 0), None, True, "<csp.Mutex unlocked>"] * 3
    assert _waiter.READY.done() and _waiter.READY.result() is None


def test_waiter_add_done_callback_outside_a_loop_is_a_clear_error() -> None:
    """Parking a plain task's wake-up on a waiter needs a running loop: outside one,
    add_done_callback says so at once instead of failing later at completion."""
    w = _waiter.Waiter("x")
    with pytest.raises(RuntimeError, match="no running event loop"):
        w.add_done_callback(lambda f: None)
    assert w.waker is None
