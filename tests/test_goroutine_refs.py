"""Finished goroutines are freed by reference counting, like finished asyncio Tasks.

Found by the scale benchmark (``python -m benchmarks --pattern scale``): since goroutines
run through a Goroutine shim, a finished goroutine's Task and shim keep each other alive
(``shim.task`` -> Task -> its coroutine, the shim), so every finished goroutine is
cyclic garbage that only the cycle collector frees. With many goroutines alive, the
extra collections each walk all of them: waking 1M parked goroutines takes ~2.5 s with
the collector off and ~10-12 s with it on (asyncio tasks: ~4 s), and spawn slows alike.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable
from typing import Any

import csp


def test_finished_goroutine_is_freed_without_the_cycle_collector(
        run: Callable[..., Any]) -> None:
    """A goroutine that has finished, and that nothing references, is freed at once."""

    async def main() -> list[str]:
        async def g() -> int:
            return 1

        freed: list[str] = []
        gc.disable()
        try:
            for name, start in (("create_task", lambda: asyncio.create_task(g())),
                                ("csp.go", lambda: csp.go(g))):
                t = start()
                assert await t == 1
                for _ in range(3):  # let done callbacks run
                    await asyncio.sleep(0)
                ref = weakref.ref(t)
                del t
                if ref() is None:
                    freed.append(name)
        finally:
            gc.enable()
        return freed

    assert run(main) == ["create_task", "csp.go"]


def test_task_subclass_woken_by_csp_is_freed_without_the_cycle_collector(
        run: Callable[..., Any]) -> None:
    """A Task subclass (which csp does not drive: a _TaskWake wakes it) that parked on
    a csp channel and finished is freed at once: the waiter and its _TaskWake do not
    keep each other, and the Task, alive. Found by review 4."""
    from conftest import reference_task

    async def main() -> list[bool]:
        ch = csp.Chan[int]()

        async def g() -> int:
            return await ch.recv() or 0

        out: list[bool] = []
        gc.disable()
        try:
            for _ in range(2):
                t = reference_task(g())
                await asyncio.sleep(0)
                await ch.send(5)
                assert await t == 5
                for _ in range(3):  # let done callbacks run
                    await asyncio.sleep(0)
                ref = weakref.ref(t)
                del t
                out.append(ref() is None)
        finally:
            gc.enable()
        return out

    assert run(main) == [True, True]
