"""The thread rows (``--pattern threads``): a plain thread or a second event loop
talking to a coroutine, with csp, janus and culsans.

Each row is a :class:`~benchmarks.patterns.Bench` of the ``threads`` group: its
implementations are

* ``csp``: ``csp.Chan`` with ``send_blocking`` / ``recv_blocking`` on the plain thread
  and ``await send()`` / ``await recv()`` on the loop (the main goroutine of
  ``csp.run``); for two loops, a second thread runs its own ``csp.run(...)`` on the
  same kind of loop and both share the channels;
* ``janus``: ``janus.Queue``, ``.sync_q`` on the thread, ``.async_q`` on the loop; the
  baseline of every ratio in this group. A janus queue is bound to the one event
  loop it was created on, so the two-loop rows have no janus implementation ("n/a");
* ``culsans``: ``culsans.Queue``, the same shape as janus (``.sync_q`` / ``.async_q``);
  its ``async_q`` works from any loop in any thread, so the two-loop rows use it from
  both loops.

Capacities, the same in every implementation: streams use capacity :data:`CAP`
(``Chan(64)``, ``Queue(maxsize=64)``); ping-pong uses csp's unbuffered ``Chan()``
against ``maxsize=1`` queues (the nearest thing a queue has: neither janus nor culsans
has a rendezvous queue; ``maxsize=0`` means unbounded there).

Every sample starts its threads inside the timed region (one thread start and one
cross-thread wake-up to hand the thread's result back: the same for every
implementation, small against ``n`` items) and joins them before it returns.

These rows are not in the default ``--quick`` run (janus and culsans are benchmark
extras, and threads make the numbers noisier on small machines): ``--pattern threads``
(or a row's key) runs them, ``--full`` includes them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import csp
from benchmarks.patterns import CAP, GROUPS, Bench, Impl, _sizes, _tri

try:
    import janus
except ImportError:  # pragma: no cover - the bench extra is not installed
    janus = None  # type: ignore[assignment]
try:
    import culsans
except ImportError:  # pragma: no cover - the bench extra is not installed
    culsans = None  # type: ignore[assignment]

T = TypeVar("T")

GROUP = "threads"
THREAD_IMPLS: tuple[str, ...] = GROUPS[GROUP].impls  # csp, janus (baseline), culsans
# Queue capacity of the ping-pong rows in janus and culsans (csp: unbuffered Chan()).
PINGPONG_MAXSIZE = 1
JANUS_TWO_LOOPS = "n/a: a janus.Queue is bound to the event loop that created it"


def available() -> dict[str, bool]:
    """Which peer libraries are importable here."""
    return {"csp": True, "janus": janus is not None, "culsans": culsans is not None}


# -- helpers -----------------------------------------------------------------------------


def start_thread(fn: Callable[[], T]) -> Coroutine[Any, Any, T]:
    """Start ``fn()`` on a new thread now; the returned coroutine waits (without
    blocking the loop) for its result and joins the thread."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if fut.done():  # the waiter was cancelled (sample timeout)
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def target() -> None:
        try:
            value = fn()
        except BaseException as exc:
            loop.call_soon_threadsafe(settle, False, exc)
        else:
            loop.call_soon_threadsafe(settle, True, value)

    thread = threading.Thread(target=target, name="bench-thread", daemon=True)
    thread.start()

    async def join() -> T:
        value = await fut  # cancelled: the thread is left to its daemon fate
        thread.join()  # (it has returned: at most the last few bytecodes)
        return value

    return join()


def loop_name() -> str:
    """``"uvloop"`` or ``"asyncio"``: the kind of loop running this coroutine."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") \
        else "asyncio"


def _loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run_other_loop(main: Callable[[], Coroutine[Any, Any, T]], *,
                   with_csp: bool) -> Coroutine[Any, Any, T]:
    """Run ``main()`` on a second event loop (the same kind as this one) in a new
    thread: under ``csp.run`` for csp, under ``asyncio.Runner`` otherwise."""
    kind = loop_name()
    if with_csp:
        return start_thread(lambda: csp.run(main, loop=kind))
    factory = _loop_factory(kind)

    def target() -> T:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main())

    return start_thread(target)


# -- 1. thread -> goroutine stream ---------------------------------------------------------
# The thread sends range(n); the loop side receives n items and sums them.


async def t2g_csp(n: int) -> tuple[int, int]:
    ch = csp.Chan[int](CAP)

    def producer() -> None:
        send = ch.send_blocking
        for i in range(n):
            send(i)

    done = start_thread(producer)
    total = 0
    for _ in range(n):
        total += await ch.recv()  # type: ignore[operator]
    await done
    return n + len(ch), total


async def t2g_janus(n: int) -> tuple[int, int]:
    q: janus.Queue[int] = janus.Queue(CAP)

    def producer() -> None:
        put = q.sync_q.put
        for i in range(n):
            put(i)

    done = start_thread(producer)
    get = q.async_q.get
    total = 0
    for _ in range(n):
        total += await get()
    await done
    left = q.async_q.qsize()
    await q.aclose()
    return n + left, total


async def t2g_culsans(n: int) -> tuple[int, int]:
    q: culsans.Queue[int] = culsans.Queue(CAP)

    def producer() -> None:
        put = q.sync_q.put
        for i in range(n):
            put(i)

    done = start_thread(producer)
    get = q.async_q.get
    total = 0
    for _ in range(n):
        total += await get()
    await done
    left = q.async_q.qsize()
    await q.aclose()
    return n + left, total


# -- 2. goroutine -> thread stream ---------------------------------------------------------
# The loop side sends range(n); the thread receives n items and returns their sum.


async def g2t_csp(n: int) -> tuple[int, int]:
    ch = csp.Chan[int](CAP)

    def consumer() -> int:
        recv = ch.recv_blocking
        total = 0
        for _ in range(n):
            total += recv()  # type: ignore[operator]
        return total

    done = start_thread(consumer)
    for i in range(n):
        await ch.send(i)
    total = await done
    return n + len(ch), total


async def g2t_janus(n: int) -> tuple[int, int]:
    q: janus.Queue[int] = janus.Queue(CAP)

    def consumer() -> int:
        get = q.sync_q.get
        total = 0
        for _ in range(n):
            total += get()
        return total

    done = start_thread(consumer)
    put = q.async_q.put
    for i in range(n):
        await put(i)
    total = await done
    left = q.async_q.qsize()
    await q.aclose()
    return n + left, total


async def g2t_culsans(n: int) -> tuple[int, int]:
    q: culsans.Queue[int] = culsans.Queue(CAP)

    def consumer() -> int:
        get = q.sync_q.get
        total = 0
        for _ in range(n):
            total += get()
        return total

    done = start_thread(consumer)
    put = q.async_q.put
    for i in range(n):
        await put(i)
    total = await done
    left = q.async_q.qsize()
    await q.aclose()
    return n + left, total


# -- 3. thread <-> goroutine ping-pong -----------------------------------------------------
# The thread sends i on ping and adds what comes back on pong; the loop side answers
# every v with v + 1.


async def t2g_pingpong_csp(n: int) -> tuple[int, int]:
    ping, pong = csp.Chan[int](), csp.Chan[int]()

    def pinger() -> int:
        send, recv = ping.send_blocking, pong.recv_blocking
        total = 0
        for i in range(n):
            send(i)
            total += recv()  # type: ignore[operator]
        return total

    done = start_thread(pinger)
    for _ in range(n):
        v = await ping.recv()
        await pong.send(v + 1)  # type: ignore[operator]
    total = await done
    return n + len(ping) + len(pong), total


async def t2g_pingpong_janus(n: int) -> tuple[int, int]:
    ping: janus.Queue[int] = janus.Queue(PINGPONG_MAXSIZE)
    pong: janus.Queue[int] = janus.Queue(PINGPONG_MAXSIZE)

    def pinger() -> int:
        put, get = ping.sync_q.put, pong.sync_q.get
        total = 0
        for i in range(n):
            put(i)
            total += get()
        return total

    done = start_thread(pinger)
    get, put = ping.async_q.get, pong.async_q.put
    for _ in range(n):
        await put(await get() + 1)
    total = await done
    left = ping.async_q.qsize() + pong.async_q.qsize()
    await ping.aclose()
    await pong.aclose()
    return n + left, total


async def t2g_pingpong_culsans(n: int) -> tuple[int, int]:
    ping: culsans.Queue[int] = culsans.Queue(PINGPONG_MAXSIZE)
    pong: culsans.Queue[int] = culsans.Queue(PINGPONG_MAXSIZE)

    def pinger() -> int:
        put, get = ping.sync_q.put, pong.sync_q.get
        total = 0
        for i in range(n):
            put(i)
            total += get()
        return total

    done = start_thread(pinger)
    get, put = ping.async_q.get, pong.async_q.put
    for _ in range(n):
        await put(await get() + 1)
    total = await done
    left = ping.async_q.qsize() + pong.async_q.qsize()
    await ping.aclose()
    await pong.aclose()
    return n + left, total


# -- 4. two loops: ping-pong and stream ----------------------------------------------------
# A second event loop (same kind) runs in its own thread; the channels or queues are
# shared by a coroutine on each loop.


async def loops_pingpong_csp(n: int) -> tuple[int, int]:
    ping, pong = csp.Chan[int](), csp.Chan[int]()

    async def ponger() -> None:
        for _ in range(n):
            v = await ping.recv()
            await pong.send(v + 1)  # type: ignore[operator]

    done = run_other_loop(ponger, with_csp=True)
    total = 0
    for i in range(n):
        await ping.send(i)
        total += await pong.recv()  # type: ignore[operator]
    await done
    return n + len(ping) + len(pong), total


async def loops_pingpong_culsans(n: int) -> tuple[int, int]:
    ping: culsans.Queue[int] = culsans.Queue(PINGPONG_MAXSIZE)
    pong: culsans.Queue[int] = culsans.Queue(PINGPONG_MAXSIZE)

    async def ponger() -> None:
        get, put = ping.async_q.get, pong.async_q.put
        for _ in range(n):
            await put(await get() + 1)

    done = run_other_loop(ponger, with_csp=False)
    put, get = ping.async_q.put, pong.async_q.get
    total = 0
    for i in range(n):
        await put(i)
        total += await get()
    await done
    left = ping.async_q.qsize() + pong.async_q.qsize()
    await ping.aclose()
    await pong.aclose()
    return n + left, total


async def loops_stream_csp(n: int) -> tuple[int, int]:
    ch = csp.Chan[int](CAP)

    async def producer() -> None:
        for i in range(n):
            await ch.send(i)

    done = run_other_loop(producer, with_csp=True)
    total = 0
    for _ in range(n):
        total += await ch.recv()  # type: ignore[operator]
    await done
    return n + len(ch), total


async def loops_stream_culsans(n: int) -> tuple[int, int]:
    q: culsans.Queue[int] = culsans.Queue(CAP)

    async def producer() -> None:
        put = q.async_q.put
        for i in range(n):
            await put(i)

    done = run_other_loop(producer, with_csp=False)
    get = q.async_q.get
    total = 0
    for _ in range(n):
        total += await get()
    await done
    left = q.async_q.qsize()
    await q.aclose()
    return n + left, total


# -- the registry ----------------------------------------------------------------------------


def _impls(**fns: Impl | None) -> dict[str, Impl]:
    """The implementations whose library is installed (``None``: not applicable)."""
    have = available()
    return {name: fn for name, fn in fns.items() if fn is not None and have[name]}


def _build() -> list[Bench]:
    stream = {"csp": f"Chan({CAP})", "janus": f"janus.Queue({CAP})",
              "culsans": f"culsans.Queue({CAP})"}
    unbuf = {"csp": "2 x Chan() (unbuffered)",
             "janus": f"2 x janus.Queue({PINGPONG_MAXSIZE})",
             "culsans": f"2 x culsans.Queue({PINGPONG_MAXSIZE})"}
    thread_side = {"csp": "send_blocking / recv_blocking", "janus": ".sync_q",
                   "culsans": ".sync_q"}
    loop_side = {"csp": "await send / recv", "janus": ".async_q", "culsans": ".async_q"}

    def labels(chans: dict[str, str], *, two_loops: bool = False) -> dict[str, str]:
        if two_loops:
            return {"csp": f"{chans['csp']}; csp.run on each loop",
                    "janus": JANUS_TWO_LOOPS,
                    "culsans": f"{chans['culsans']}; .async_q on each loop"}
        return {i: f"{chans[i]}; thread: {thread_side[i]}, loop: {loop_side[i]}"
                for i in THREAD_IMPLS}

    common: dict[str, Any] = {"pattern": GROUP, "group": GROUP,
                              "requires": ("Chan.send_blocking", "Chan.recv_blocking")}
    two_loops_extra = {"na": {"janus": JANUS_TWO_LOOPS}}
    return [
        Bench(
            key="threads/thread->goroutine",
            title=f"thread -> goroutine stream, cap {CAP}",
            unit="items",
            go_name="Threads/ThreadToGoroutine",
            sizes=_sizes(200, 20_000, 100_000),
            impls=_impls(csp=t2g_csp, janus=t2g_janus, culsans=t2g_culsans),
            labels=labels(stream),
            expected=lambda n: (n, _tri(n)),
            goal=2.0,
            extra={"go_ref": f"SPSC/cap={CAP}"},  # in Go a thread is a goroutine
            **common,
        ),
        Bench(
            key="threads/goroutine->thread",
            title=f"goroutine -> thread stream, cap {CAP}",
            unit="items",
            go_name="Threads/GoroutineToThread",
            sizes=_sizes(200, 20_000, 100_000),
            impls=_impls(csp=g2t_csp, janus=g2t_janus, culsans=g2t_culsans),
            labels=labels(stream),
            expected=lambda n: (n, _tri(n)),
            goal=2.0,
            extra={"go_ref": f"SPSC/cap={CAP}"},
            **common,
        ),
        Bench(
            key="threads/pingpong",
            title="thread <-> goroutine ping-pong",
            unit="round trips",
            go_name="Threads/PingPong",
            sizes=_sizes(100, 3_000, 15_000),
            impls=_impls(csp=t2g_pingpong_csp, janus=t2g_pingpong_janus,
                         culsans=t2g_pingpong_culsans),
            labels=labels(unbuf),
            expected=lambda n: (n, _tri(n) + n),
            goal=2.0,
            extra={"go_ref": "PingPong"},
            **common,
        ),
        Bench(
            key="threads/loops-pingpong",
            title="two loops ping-pong",
            unit="round trips",
            go_name="Threads/TwoLoopsPingPong",
            sizes=_sizes(100, 3_000, 15_000),
            impls=_impls(csp=loops_pingpong_csp, janus=None, culsans=loops_pingpong_culsans),
            labels=labels(unbuf, two_loops=True),
            expected=lambda n: (n, _tri(n) + n),
            extra={"go_ref": "PingPong", **two_loops_extra},
            **common,
        ),
        Bench(
            key="threads/loops-stream",
            title=f"two loops stream, cap {CAP}",
            unit="items",
            go_name="Threads/TwoLoopsStream",
            sizes=_sizes(200, 20_000, 100_000),
            impls=_impls(csp=loops_stream_csp, janus=None, culsans=loops_stream_culsans),
            labels=labels(stream, two_loops=True),
            expected=lambda n: (n, _tri(n)),
            extra={"go_ref": f"SPSC/cap={CAP}", **two_loops_extra},
            **common,
        ),
    ]


THREAD_BENCHES: list[Bench] = _build()
