"""Cost of csp contexts and timers beside their nearest plain-asyncio equivalents.

Run: ``python benchmarks/bench_context_time.py`` (standalone; both loops, one process).

Measured per operation (best of several rounds, microseconds):

* context tree: create a with_cancel root with 10 with_cancel children, each with 10
  with_timeout grandchildren (111 contexts, 100 timers), then cancel the root;
  baseline: the same number of ``asyncio.timeout()`` blocks entered and exited
  (111 nested-or-sibling cancel scopes, 100 of them with a deadline), which is what
  plain asyncio offers for "cancel this subtree of work";
* one with_cancel child + cancel; one with_timeout child + cancel;
  baseline: one ``async with asyncio.timeout(1000): pass``;
* ``async with scope(ctx): pass`` (the asyncio bridge) vs ``asyncio.timeout``;
* Timer(d) + stop(); after_func(d, f) + stop(); baseline: ``loop.call_later(d, f)`` +
  ``handle.cancel()``;
* sleep wake-up: ``await csp.sleep(tiny)`` vs ``await asyncio.sleep(tiny)`` (timer fires,
  task resumes).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import csp
from csp import context

ROUNDS = 5


async def best(fn: Callable[[int], Awaitable[None]], n: int) -> float:
    """Best per-operation time of ``fn(n)`` over ROUNDS, in microseconds."""
    out = []
    for _ in range(ROUNDS):
        gc.collect()
        t = time.perf_counter()
        await fn(n)
        out.append((time.perf_counter() - t) / n * 1e6)
    return min(out)


def noop() -> None:
    pass


async def ctx_tree(n: int) -> None:
    bg = context.background()
    for _ in range(n):
        root, cancel = context.with_cancel(bg)
        for _ in range(10):
            child, _c = context.with_cancel(root)
            for _ in range(10):
                context.with_timeout(child, 1000.0)
        cancel()


async def timeout_tree(n: int) -> None:
    timeout = asyncio.timeout
    for _ in range(n):
        async with timeout(None):
            for _ in range(10):
                async with timeout(None):
                    for _ in range(10):
                        async with timeout(1000.0):
                            pass


async def ctx_cancel(n: int) -> None:
    bg, with_cancel = context.background(), context.with_cancel
    root, stop = with_cancel(bg)
    for _ in range(n):
        _, c = with_cancel(root)
        c()
    stop()


async def ctx_timeout(n: int) -> None:
    bg, with_timeout = context.background(), context.with_timeout
    root, stop = context.with_cancel(bg)
    for _ in range(n):
        _, c = with_timeout(root, 1000.0)
        c()
    stop()


async def aio_timeout(n: int) -> None:
    timeout = asyncio.timeout
    for _ in range(n):
        async with timeout(1000.0):
            pass


async def ctx_scope(n: int) -> None:
    root, stop = context.with_cancel(context.background())
    scope = context.scope
    for _ in range(n):
        async with scope(root):
            pass
    stop()


async def timer_stop(n: int) -> None:
    Timer = csp.Timer
    for _ in range(n):
        Timer(1000.0).stop()


async def after_func_stop(n: int) -> None:
    after_func = csp.after_func
    for _ in range(n):
        after_func(1000.0, noop).stop()


async def call_later_cancel(n: int) -> None:
    call_later = asyncio.get_running_loop().call_later
    for _ in range(n):
        call_later(1000.0, noop).cancel()


async def csp_sleep(n: int) -> None:
    for _ in range(n):
        await csp.sleep(1e-6)


async def aio_sleep(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(1e-6)


async def ctx_done_select(n: int) -> None:
    """A select on (ready channel, ctx.done()): the per-iteration cost of watching ctx."""
    ctx, stop = context.with_cancel(context.background())
    ch = csp.Chan[int](1)
    done = ctx.done()
    for _ in range(n):
        await ch.send(1)
        await csp.select(ch.recv, done.recv)
    stop()


async def plain_recv(n: int) -> None:
    ch = csp.Chan[int](1)
    for _ in range(n):
        await ch.send(1)
        await ch.recv()


CASES: list[tuple[str, Callable[[int], Awaitable[None]], int]] = [
    ("context tree (111 ctx, 100 timers) create+cancel", ctx_tree, 200),
    ("asyncio.timeout x111 (100 with deadline) enter+exit", timeout_tree, 200),
    ("with_cancel child + cancel", ctx_cancel, 50_000),
    ("with_timeout child + cancel", ctx_timeout, 50_000),
    ("asyncio.timeout(1000) enter+exit", aio_timeout, 50_000),
    ("async with scope(ctx) (live ctx)", ctx_scope, 50_000),
    ("csp.Timer(1000).stop()", timer_stop, 50_000),
    ("csp.after_func(1000, f).stop()", after_func_stop, 50_000),
    ("loop.call_later(1000, f).cancel()", call_later_cancel, 50_000),
    ("await csp.sleep(1us) (timer fires, task resumes)", csp_sleep, 2_000),
    ("await asyncio.sleep(1us)", aio_sleep, 2_000),
    ("send + select(recv, ctx.done().recv)", ctx_done_select, 50_000),
    ("send + recv (no ctx)", plain_recv, 50_000),
]


async def measure() -> list[tuple[str, float]]:
    return [(name, await best(fn, n)) for name, fn, n in CASES]


def main() -> None:
    # Plain loops (asyncio.Runner), not csp.run: csp.run's uvloop subclass adds timer
    # bookkeeping to every call_at for deadlock detection, which would tax the
    # asyncio baselines too.
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop}
    try:
        import uvloop

        factories["uvloop"] = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        pass
    results: dict[str, list[tuple[str, float]]] = {}
    for name, factory in factories.items():
        with asyncio.Runner(loop_factory=factory) as runner:
            results[name] = runner.run(measure())
    names = [name for name, _, _ in CASES]
    width = max(len(n) for n in names)
    header = f"{'operation':<{width}}  " + "  ".join(f"{lp:>9}" for lp in results)
    print(f"Python {sys.version.split()[0]}; microseconds per operation, best of {ROUNDS}")
    print(header)
    print("-" * len(header))
    for i, name in enumerate(names):
        row = "  ".join(f"{results[lp][i][1]:9.3f}" for lp in results)
        print(f"{name:<{width}}  {row}")


if __name__ == "__main__":
    main()
