"""The benchmark patterns: the same work written with csp, asyncio and anyio.

Each pattern is one :class:`Bench`: a size ``n`` (items moved, round trips, lock
operations or tasks spawned), one coroutine function per implementation, and the
``(count, checksum)`` that every implementation must return for that ``n``. The
runner compares the returned pair with :meth:`Bench.expected` after every sample, so
no implementation can win by doing less (or by losing values): a mismatch is an
error, never a number.

The three implementations, written as a user of each library would write them:

* ``csp``: ``csp.Chan``, ``csp.select``, ``csp.go``, ``csp.Mutex`` ... (run under
  ``csp.run``);
* ``asyncio``: ``asyncio.Queue`` (``maxsize=1`` where csp is unbuffered: the nearest
  thing asyncio has), ``asyncio.wait`` on ``get()`` tasks for select, ``asyncio.Lock``,
  ``asyncio.Semaphore``, ``asyncio.gather``; this is the baseline of every ratio;
* ``anyio``: memory object streams (``anyio.create_memory_object_stream``), task
  groups, ``anyio.Lock``, ``anyio.Semaphore`` (on the asyncio backend).

Every implementation joins the tasks it started before it returns, and counts what
is left in its channels, so leftovers or duplicates show up in ``count``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import anyio

import csp

Impl = Callable[[int], Awaitable[tuple[int, int]]]

IMPLS: tuple[str, ...] = ("csp", "asyncio", "anyio")
BASELINE = "asyncio"

# Channel capacity of the multi-task patterns (fan-in, worker pool, pipeline,
# end-of-stream): a typical "some slack" buffer, the same in every implementation.
CAP = 64
# Capacity of each of the 4 channels in the select pattern: 1 has the same meaning in
# all three libraries.
SELECT_CAP = 1
# Tasks in the fan-in, worker pool and contended lock patterns.
FAN = 8
# Slots of the semaphore pattern (FAN tasks compete for them).
SEM_SLOTS = 4

HAS_QUEUE_SHUTDOWN = hasattr(asyncio.Queue, "shutdown")  # Python 3.13+


@dataclass(frozen=True)
class Group:
    """A family of rows measured against the same peers: its own table columns, its
    own baseline (the denominator of every ratio) and rival (csp's goal is to be
    ahead of it too)."""

    name: str
    title: str  # shown in table titles ("" for the default group)
    impls: tuple[str, ...]
    baseline: str
    rival: str


# The thread rows (benchmarks/threads.py) are their own group: a plain thread or a
# second loop against csp, janus and culsans, with janus as the baseline.
GROUPS: dict[str, Group] = {
    "channels": Group("channels", "", IMPLS, BASELINE, "anyio"),
    "threads": Group("threads", "threads and two loops", ("csp", "janus", "culsans"),
                     "janus", "culsans"),
}
ALL_IMPLS: tuple[str, ...] = tuple(dict.fromkeys(i for g in GROUPS.values() for i in g.impls))


class IntegrityError(AssertionError):
    """An implementation returned the wrong item count or checksum."""


@dataclass(frozen=True, eq=False)  # compared and hashed by identity
class Bench:
    """One measured case: a pattern at one setting (e.g. SPSC at capacity 64)."""

    key: str  # "spsc/cap=64": unique, used by --pattern and in JSON
    pattern: str  # "spsc": the pattern family
    title: str  # shown in tables
    unit: str  # what one op is: "round trips", "items", "lock ops", "tasks"
    go_name: str  # "SPSC/cap=64": Go benchmark name (benchmarks/go) and --format go
    sizes: dict[str, int]  # n for the "tiny", "quick" and "full" sizes
    impls: dict[str, Impl]
    labels: dict[str, str]  # what each implementation uses, for the footnotes
    expected: Callable[[int], tuple[int, int]]
    requires: tuple[str, ...] = ()  # csp attributes the csp implementation needs (dotted ok)
    goal: float | None = None  # target ratio csp / baseline (issue 6)
    extra: dict[str, Any] = field(default_factory=dict)
    group: str = "channels"  # a key of GROUPS: which peers, baseline and rival

    @property
    def peers(self) -> Group:
        return GROUPS[self.group]

    @property
    def baseline(self) -> str:
        """The implementation every ratio of this bench is taken against."""
        return self.peers.baseline

    def not_applicable(self, impl: str) -> str | None:
        """Why ``impl`` has no version of this bench (``None``: it has one)."""
        na: dict[str, str] = self.extra.get("na", {})
        return na.get(impl)

    @property
    def go_ref(self) -> str:
        """The Go benchmark this one is compared with: ``go_name``, unless ``extra``
        names another (a variant with no Go twin of its own)."""
        return str(self.extra.get("go_ref", self.go_name))

    def missing(self) -> list[str]:
        """csp names this bench needs that this csp build does not have (dotted names,
        such as ``Chan.send_blocking``, are looked up attribute by attribute)."""
        return [name for name in self.requires if not _has(csp, name)]

    def check(self, n: int, got: tuple[int, int]) -> None:
        want = self.expected(n)
        if tuple(got) != want:
            raise IntegrityError(
                f"{self.key}: expected (count, checksum) = {want}, got {tuple(got)}"
            )


def _has(obj: Any, dotted: str) -> bool:
    for part in dotted.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def _tri(n: int) -> int:
    """0 + 1 + ... + (n - 1)."""
    return n * (n - 1) // 2


def _leftover_anyio(*receivers: Any) -> int:
    return sum(r.statistics().current_buffer_used for r in receivers)


# -- 1. ping-pong -------------------------------------------------------------------


async def pingpong_csp(n: int) -> tuple[int, int]:
    ping, pong = csp.Chan[int](), csp.Chan[int]()

    async def ponger() -> None:
        for _ in range(n):
            v = await ping.recv()
            await pong.send(v + 1)  # type: ignore[operator]

    t = csp.go(ponger)
    total = 0
    for i in range(n):
        await ping.send(i)
        total += await pong.recv()  # type: ignore[operator]
    await t
    return n + len(ping) + len(pong), total


async def pingpong_tasks_csp(n: int) -> tuple[int, int]:
    """csp channels between two plain asyncio Tasks of a TaskGroup (not goroutines): csp
    drives any Task's coroutine once it has parked in csp, so this should match
    ``pingpong_csp``."""
    ping, pong = csp.Chan[int](), csp.Chan[int]()

    async def ponger() -> None:
        for _ in range(n):
            v = await ping.recv()
            await pong.send(v + 1)  # type: ignore[operator]

    async def pinger() -> int:
        total = 0
        for i in range(n):
            await ping.send(i)
            total += await pong.recv()  # type: ignore[operator]
        return total

    async with asyncio.TaskGroup() as tg:
        tg.create_task(ponger())
        t = tg.create_task(pinger())
    return n + len(ping) + len(pong), t.result()


async def pingpong_asyncio(n: int) -> tuple[int, int]:
    ping: asyncio.Queue[int] = asyncio.Queue(1)
    pong: asyncio.Queue[int] = asyncio.Queue(1)

    async def ponger() -> None:
        for _ in range(n):
            v = await ping.get()
            await pong.put(v + 1)

    t = asyncio.create_task(ponger())
    total = 0
    for i in range(n):
        await ping.put(i)
        total += await pong.get()
    await t
    return n + ping.qsize() + pong.qsize(), total


async def pingpong_anyio(n: int) -> tuple[int, int]:
    ping_s, ping_r = anyio.create_memory_object_stream[int](0)
    pong_s, pong_r = anyio.create_memory_object_stream[int](0)

    async def ponger() -> None:
        for _ in range(n):
            v = await ping_r.receive()
            await pong_s.send(v + 1)

    total = 0
    with ping_s, ping_r, pong_s, pong_r:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ponger)
            for i in range(n):
                await ping_s.send(i)
                total += await pong_r.receive()
        left = _leftover_anyio(ping_r, pong_r)
    return n + left, total


# -- 2. SPSC stream ---------------------------------------------------------------------


def spsc_csp(cap: int) -> Impl:
    async def run(n: int) -> tuple[int, int]:
        ch = csp.Chan[int](cap)

        async def producer() -> None:
            for i in range(n):
                await ch.send(i)

        t = csp.go(producer)
        total = 0
        for _ in range(n):
            total += await ch.recv()  # type: ignore[operator]
        await t
        return n + len(ch), total

    return run


def spsc_asyncio(cap: int) -> Impl:
    async def run(n: int) -> tuple[int, int]:
        q: asyncio.Queue[int] = asyncio.Queue(max(cap, 1))

        async def producer() -> None:
            for i in range(n):
                await q.put(i)

        t = asyncio.create_task(producer())
        total = 0
        for _ in range(n):
            total += await q.get()
        await t
        return n + q.qsize(), total

    return run


def spsc_anyio(cap: int) -> Impl:
    async def run(n: int) -> tuple[int, int]:
        send, recv = anyio.create_memory_object_stream[int](cap)

        async def producer() -> None:
            for i in range(n):
                await send.send(i)

        total = 0
        with send, recv:
            async with anyio.create_task_group() as tg:
                tg.start_soon(producer)
                for _ in range(n):
                    total += await recv.receive()
            left = _leftover_anyio(recv)
        return n + left, total

    return run


# -- 3. fan-in: FAN producers, 1 consumer --------------------------------------------


async def fanin_csp(n: int) -> tuple[int, int]:
    ch = csp.Chan[int](CAP)

    async def producer(p: int) -> None:
        for i in range(p, n, FAN):
            await ch.send(i)

    ts = [csp.go(producer, p) for p in range(FAN)]
    total = 0
    for _ in range(n):
        total += await ch.recv()  # type: ignore[operator]
    for t in ts:
        await t
    return n + len(ch), total


async def fanin_asyncio(n: int) -> tuple[int, int]:
    q: asyncio.Queue[int] = asyncio.Queue(CAP)

    async def producer(p: int) -> None:
        for i in range(p, n, FAN):
            await q.put(i)

    ts = [asyncio.create_task(producer(p)) for p in range(FAN)]
    total = 0
    for _ in range(n):
        total += await q.get()
    for t in ts:
        await t
    return n + q.qsize(), total


async def fanin_anyio(n: int) -> tuple[int, int]:
    send, recv = anyio.create_memory_object_stream[int](CAP)

    async def producer(p: int) -> None:
        for i in range(p, n, FAN):
            await send.send(i)

    total = 0
    with send, recv:
        async with anyio.create_task_group() as tg:
            for p in range(FAN):
                tg.start_soon(producer, p)
            for _ in range(n):
                total += await recv.receive()
        left = _leftover_anyio(recv)
    return n + left, total


# -- 4. worker pool: 1 dispatcher, FAN workers, 1 collector ----------------------------
# Workers turn job j into 2j + 1; the collector sums n results: n * n.


async def pool_csp(n: int) -> tuple[int, int]:
    jobs, results = csp.Chan[int](CAP), csp.Chan[int](CAP)

    async def dispatcher() -> None:
        for i in range(n):
            await jobs.send(i)
        jobs.close()

    async def worker() -> None:
        async for j in jobs:
            await results.send(2 * j + 1)

    ts = [csp.go(dispatcher)] + [csp.go(worker) for _ in range(FAN)]
    total = 0
    for _ in range(n):
        total += await results.recv()  # type: ignore[operator]
    for t in ts:
        await t
    return n + len(jobs) + len(results), total


async def pool_asyncio(n: int) -> tuple[int, int]:
    jobs: asyncio.Queue[int | None] = asyncio.Queue(CAP)
    results: asyncio.Queue[int] = asyncio.Queue(CAP)

    async def dispatcher() -> None:
        for i in range(n):
            await jobs.put(i)
        for _ in range(FAN):  # one end-of-work sentinel per worker
            await jobs.put(None)

    async def worker() -> None:
        while (j := await jobs.get()) is not None:
            await results.put(2 * j + 1)

    ts = [asyncio.create_task(dispatcher())]
    ts += [asyncio.create_task(worker()) for _ in range(FAN)]
    total = 0
    for _ in range(n):
        total += await results.get()
    for t in ts:
        await t
    return n + jobs.qsize() + results.qsize(), total


async def pool_anyio(n: int) -> tuple[int, int]:
    jobs_s, jobs_r = anyio.create_memory_object_stream[int](CAP)
    res_s, res_r = anyio.create_memory_object_stream[int](CAP)

    async def dispatcher() -> None:
        async with jobs_s:
            for i in range(n):
                await jobs_s.send(i)

    async def worker() -> None:
        async for j in jobs_r:
            await res_s.send(2 * j + 1)

    total = 0
    with jobs_r, res_s, res_r:
        async with anyio.create_task_group() as tg:
            tg.start_soon(dispatcher)
            for _ in range(FAN):
                tg.start_soon(worker)
            for _ in range(n):
                total += await res_r.receive()
        left = _leftover_anyio(jobs_r, res_r)
    return n + left, total


# -- 5. pipeline: source -> 4 stages (each adds 1) -> sink ---------------------------

STAGES = 4


async def pipeline_csp(n: int) -> tuple[int, int]:
    chans = [csp.Chan[int](CAP) for _ in range(STAGES + 1)]

    async def source() -> None:
        out = chans[0]
        for i in range(n):
            await out.send(i)

    async def stage(inp: csp.Chan[int], out: csp.Chan[int]) -> None:
        for _ in range(n):
            v = await inp.recv()
            await out.send(v + 1)  # type: ignore[operator]

    ts = [csp.go(source)]
    ts += [csp.go(stage, chans[k], chans[k + 1]) for k in range(STAGES)]
    sink = chans[-1]
    total = 0
    for _ in range(n):
        total += await sink.recv()  # type: ignore[operator]
    for t in ts:
        await t
    return n + sum(len(c) for c in chans), total


async def pipeline_asyncio(n: int) -> tuple[int, int]:
    qs: list[asyncio.Queue[int]] = [asyncio.Queue(CAP) for _ in range(STAGES + 1)]

    async def source() -> None:
        out = qs[0]
        for i in range(n):
            await out.put(i)

    async def stage(inp: asyncio.Queue[int], out: asyncio.Queue[int]) -> None:
        for _ in range(n):
            v = await inp.get()
            await out.put(v + 1)

    ts = [asyncio.create_task(source())]
    ts += [asyncio.create_task(stage(qs[k], qs[k + 1])) for k in range(STAGES)]
    sink = qs[-1]
    total = 0
    for _ in range(n):
        total += await sink.get()
    for t in ts:
        await t
    return n + sum(q.qsize() for q in qs), total


async def pipeline_anyio(n: int) -> tuple[int, int]:
    pairs = [anyio.create_memory_object_stream[int](CAP) for _ in range(STAGES + 1)]

    async def source() -> None:
        out = pairs[0][0]
        for i in range(n):
            await out.send(i)

    async def stage(inp: Any, out: Any) -> None:
        for _ in range(n):
            v = await inp.receive()
            await out.send(v + 1)

    total = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(source)
        for k in range(STAGES):
            tg.start_soon(stage, pairs[k][1], pairs[k + 1][0])
        sink = pairs[-1][1]
        for _ in range(n):
            total += await sink.receive()
    left = _leftover_anyio(*(r for _, r in pairs))
    for s, r in pairs:
        s.close()
        r.close()
    return n + left, total


# -- 6. select over 4 channels --------------------------------------------------------
# 4 producers, producer k sends range(k, n, 4) on its own channel; the consumer takes n
# items from whichever channel is ready.

SELECT_WAYS = 4


async def select_csp(n: int) -> tuple[int, int]:
    a, b, c, d = chans = [csp.Chan[int](SELECT_CAP) for _ in range(SELECT_WAYS)]

    async def producer(k: int) -> None:
        ch = chans[k]
        for i in range(k, n, SELECT_WAYS):
            await ch.send(i)

    ts = [csp.go(producer, k) for k in range(SELECT_WAYS)]
    total = 0
    for _ in range(n):
        _, v = await csp.select(a.recv, b.recv, c.recv, d.recv)
        total += v
    for t in ts:
        await t
    return n + sum(len(ch) for ch in chans), total


async def select_asyncio(n: int) -> tuple[int, int]:
    """The plain-asyncio select: one pending ``get()`` task per queue, ``asyncio.wait``.

    A get task that did not win stays pending and is reused by the next round (cancelling
    it could lose an item it already took); only at the end are the idle ones cancelled,
    and any that completed anyway are still counted.
    """
    qs: list[asyncio.Queue[int]] = [asyncio.Queue(SELECT_CAP) for _ in range(SELECT_WAYS)]

    async def producer(k: int) -> None:
        q = qs[k]
        for i in range(k, n, SELECT_WAYS):
            await q.put(i)

    ts = [asyncio.create_task(producer(k)) for k in range(SELECT_WAYS)]
    getters: dict[asyncio.Task[int], asyncio.Queue[int]] = {
        asyncio.create_task(q.get()): q for q in qs
    }
    total = count = 0
    while count < n:
        done, _ = await asyncio.wait(getters, return_when=asyncio.FIRST_COMPLETED)
        for g in done:
            q = getters.pop(g)
            total += g.result()
            count += 1
            getters[asyncio.create_task(q.get())] = q
    for g in getters:
        g.cancel()
    for g in getters:
        try:
            total += await g  # a get that completed before the cancel keeps its item
            count += 1
        except asyncio.CancelledError:
            pass
    for t in ts:
        await t
    return count + sum(q.qsize() for q in qs), total


async def select_anyio(n: int) -> tuple[int, int]:
    """anyio has no select: the anyio way is a forwarder task per stream into one stream.

    The merged stream is unbuffered, so an item leaves its source only when the consumer
    takes it (as with select).
    """
    pairs = [anyio.create_memory_object_stream[int](SELECT_CAP) for _ in range(SELECT_WAYS)]
    merged_s, merged_r = anyio.create_memory_object_stream[int](0)

    async def producer(k: int) -> None:
        send = pairs[k][0]
        async with send:
            for i in range(k, n, SELECT_WAYS):
                await send.send(i)

    async def forward(recv: Any, out: Any) -> None:
        async with recv, out:
            async for v in recv:
                await out.send(v)

    total = 0
    with merged_r:
        async with anyio.create_task_group() as tg:
            for k in range(SELECT_WAYS):
                tg.start_soon(producer, k)
                tg.start_soon(forward, pairs[k][1], merged_s.clone())
            merged_s.close()
            for _ in range(n):
                total += await merged_r.receive()
        left = _leftover_anyio(merged_r)
    return n + left, total


# -- 7. end-of-stream: 1 producer closes, 4 consumers drain -------------------------

EOS_CONSUMERS = 4


async def eos_csp(n: int) -> tuple[int, int]:
    ch = csp.Chan[int](CAP)
    sums: list[tuple[int, int]] = []

    async def producer() -> None:
        for i in range(n):
            await ch.send(i)
        ch.close()

    async def consumer() -> None:
        c = s = 0
        async for v in ch:
            c += 1
            s += v
        sums.append((c, s))

    ts = [csp.go(producer)] + [csp.go(consumer) for _ in range(EOS_CONSUMERS)]
    for t in ts:
        await t
    return sum(c for c, _ in sums), sum(s for _, s in sums)


async def eos_asyncio(n: int) -> tuple[int, int]:
    q: asyncio.Queue[int | None] = asyncio.Queue(CAP)
    sums: list[tuple[int, int]] = []

    async def producer() -> None:
        for i in range(n):
            await q.put(i)
        if HAS_QUEUE_SHUTDOWN:
            q.shutdown()  # type: ignore[attr-defined]
        else:
            for _ in range(EOS_CONSUMERS):  # one end-of-stream sentinel per consumer
                await q.put(None)

    async def consumer() -> None:
        c = s = 0
        if HAS_QUEUE_SHUTDOWN:
            shut = asyncio.QueueShutDown  # type: ignore[attr-defined]
            while True:
                try:
                    v = await q.get()
                except shut:
                    break
                c += 1
                s += v  # type: ignore[operator]
        else:
            while (v := await q.get()) is not None:
                c += 1
                s += v
        sums.append((c, s))

    ts = [asyncio.create_task(producer())]
    ts += [asyncio.create_task(consumer()) for _ in range(EOS_CONSUMERS)]
    for t in ts:
        await t
    return sum(c for c, _ in sums), sum(s for _, s in sums)


async def eos_anyio(n: int) -> tuple[int, int]:
    send, recv = anyio.create_memory_object_stream[int](CAP)
    sums: list[tuple[int, int]] = []

    async def producer() -> None:
        async with send:  # closing the send side is the end of the stream
            for i in range(n):
                await send.send(i)

    async def consumer() -> None:
        c = s = 0
        async for v in recv:
            c += 1
            s += v
        sums.append((c, s))

    with recv:
        async with anyio.create_task_group() as tg:
            tg.start_soon(producer)
            for _ in range(EOS_CONSUMERS):
                tg.start_soon(consumer)
    return sum(c for c, _ in sums), sum(s for _, s in sums)


# -- 8. locks -----------------------------------------------------------------------------
# Uncontended: one task, n x (lock; count += 1; unlock).
# Contended: FAN tasks share n iterations of (lock; v = count; yield; count = v + 1;
# unlock): the yield inside the critical section makes the others queue up on the lock,
# and a lost update (count != n) would expose a broken lock. All three yield with the
# same asyncio.sleep(0), so only the lock differs.


def lock_uncontended(make: Callable[[], Any]) -> Impl:
    async def run(n: int) -> tuple[int, int]:
        mu = make()
        count = 0
        for _ in range(n):
            async with mu:
                count += 1
        return n, count

    return run


Body = Callable[[], Coroutine[Any, Any, None]]


def _spawner(impl: str) -> Callable[[list[Body]], Awaitable[None]]:
    """Start the given coroutine functions as tasks of ``impl``'s kind and join them."""

    async def run_csp(fns: list[Body]) -> None:
        ts = [csp.go(fn) for fn in fns]
        for t in ts:
            await t

    async def run_asyncio(fns: list[Body]) -> None:
        ts = [asyncio.create_task(fn()) for fn in fns]
        for t in ts:
            await t

    async def run_anyio(fns: list[Body]) -> None:
        async with anyio.create_task_group() as tg:
            for fn in fns:
                tg.start_soon(fn)

    return {"csp": run_csp, "asyncio": run_asyncio, "anyio": run_anyio}[impl]


def lock_contended(impl: str, make: Callable[[], Any]) -> Impl:
    spawn = _spawner(impl)

    async def run(n: int) -> tuple[int, int]:
        mu = make()
        state = [0]
        sleep = asyncio.sleep

        def worker(k: int) -> Body:
            async def body() -> None:
                for _ in range(k, n, FAN):
                    async with mu:
                        v = state[0]
                        await sleep(0)
                        state[0] = v + 1

            return body

        await spawn([worker(k) for k in range(FAN)])
        return n, state[0]

    return run


def semaphore_contended(impl: str, make: Callable[[int], Any]) -> Impl:
    """FAN tasks share n acquisitions of a SEM_SLOTS-slot semaphore; checksum: peak holders."""
    spawn = _spawner(impl)

    async def run(n: int) -> tuple[int, int]:
        sem = make(SEM_SLOTS)
        state = [0, 0, 0]  # acquisitions, holders now, peak holders
        sleep = asyncio.sleep

        def worker(k: int) -> Body:
            async def body() -> None:
                for _ in range(k, n, FAN):
                    async with sem:
                        state[0] += 1
                        state[1] += 1
                        if state[1] > state[2]:
                            state[2] = state[1]
                        await sleep(0)
                        state[1] -= 1

            return body

        await spawn([worker(k) for k in range(FAN)])
        return state[0], state[2]

    return run


# -- 9. spawn and join ------------------------------------------------------------------


async def spawn_csp(n: int) -> tuple[int, int]:
    wg = csp.WaitGroup()
    acc = [0, 0]

    async def worker(i: int) -> None:
        acc[0] += 1
        acc[1] += i
        wg.done()

    wg.add(n)
    for i in range(n):
        csp.go(worker, i)
    await wg.wait()
    return acc[0], acc[1]


async def spawn_asyncio(n: int) -> tuple[int, int]:
    acc = [0, 0]

    async def worker(i: int) -> None:
        acc[0] += 1
        acc[1] += i

    await asyncio.gather(*[worker(i) for i in range(n)])
    return acc[0], acc[1]


async def spawn_anyio(n: int) -> tuple[int, int]:
    acc = [0, 0]

    async def worker(i: int) -> None:
        acc[0] += 1
        acc[1] += i

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(worker, i)
    return acc[0], acc[1]


# -- the registry ----------------------------------------------------------------------


def _csp_mutex() -> Any:
    return csp.Mutex()



# -- broadcast: 1 publisher -> k subscribers, each gets every value ---------------------
# Each subscriber sums what it received; all sums must agree. csp: csp.Broadcast, or
# (the hand-written fan-out Go code uses) one csp.Chan per subscriber; asyncio: one
# Queue per subscriber; anyio: one memory stream per subscriber.


def _fanout_result(sums: list[int], n: int, counts: list[int]) -> tuple[int, int]:
    if len(set(sums)) != 1 or set(counts) != {n}:
        raise IntegrityError(f"broadcast: subscribers disagree: {sums} / {counts}")
    return n, sums[0]


def broadcast_csp(k: int) -> Impl:
    async def run(n: int) -> tuple[int, int]:
        b = csp.Broadcast[int](CAP)
        subs = [b.subscribe() for _ in range(k)]
        sums, counts = [0] * k, [0] * k

        async def sub(j: int) -> None:
            async for v in subs[j]:
                sums[j] += v
                counts[j] += 1

        wg = csp.WaitGroup()
        for j in range(k):
            wg.go(sub, j)
        for i in range(n):
            await b.send(i)
        b.close()
        await wg.wait()
        return _fanout_result(sums, n, counts)

    return run


def fanout_chans_csp(k: int) -> Impl:
    async def run(n: int) -> tuple[int, int]:
        chans = [csp.Chan[int](CAP) for _ in range(k)]
        sums, counts = [0] * k, [0] * k

        async def sub(j: int) -> None:
            async for v in chans[j]:
                sums[j] += v
                counts[j] += 1

        wg = csp.WaitGroup()
        for j in range(k):
            wg.go(sub, j)
        for i in range(n):
            for ch in chans:
                await ch.send(i)
        for ch in chans:
            ch.close()
        await wg.wait()
        return _fanout_result(sums, n, counts)

    return run


def fanout_asyncio(k: int) -> Impl:
    async def run(n: int) -> tuple[int, int]:
        queues: list[asyncio.Queue[int | None]] = [asyncio.Queue(CAP) for _ in range(k)]
        sums, counts = [0] * k, [0] * k

        async def sub(j: int) -> None:
            q = queues[j]
            while (v := await q.get()) is not None:
                sums[j] += v
                counts[j] += 1

        ts = [asyncio.create_task(sub(j)) for j in range(k)]
        for i in range(n):
            for q in queues:
                await q.put(i)
        for q in queues:
            await q.put(None)
        await asyncio.gather(*ts)
        return _fanout_result(sums, n, counts)

    return run


def fanout_anyio(k: int) -> Impl:
    async def run(n: int) -> tuple[int, int]:
        pairs = [anyio.create_memory_object_stream[int](CAP) for _ in range(k)]
        sums, counts = [0] * k, [0] * k

        async def sub(j: int) -> None:
            async with pairs[j][1] as recv:
                async for v in recv:
                    sums[j] += v
                    counts[j] += 1

        async with anyio.create_task_group() as tg:
            for j in range(k):
                tg.start_soon(sub, j)
            for i in range(n):
                for send, _ in pairs:
                    await send.send(i)
            for send, _ in pairs:
                await send.aclose()
        return _fanout_result(sums, n, counts)

    return run

def _csp_semaphore(k: int) -> Any:
    return csp.Semaphore(k)


def _sizes(tiny: int, quick: int, full: int) -> dict[str, int]:
    return {"tiny": tiny, "quick": quick, "full": full}


def _stream_labels(csp_cap: int, queue_cap: int, anyio_cap: int) -> dict[str, str]:
    return {
        "csp": f"Chan({csp_cap})",
        "asyncio": f"Queue(maxsize={queue_cap})",
        "anyio": f"memory stream({anyio_cap})",
    }


def _build() -> list[Bench]:
    benches = [
        Bench(
            key="pingpong",
            pattern="pingpong",
            title="ping-pong, unbuffered",
            unit="round trips",
            go_name="PingPong",
            sizes=_sizes(200, 3_000, 15_000),
            impls={"csp": pingpong_csp, "asyncio": pingpong_asyncio, "anyio": pingpong_anyio},
            labels=_stream_labels(0, 1, 0),
            expected=lambda n: (n, _tri(n) + n),
            goal=3.0,
        ),
        Bench(
            key="pingpong/tasks",
            pattern="pingpong-tasks",
            title="ping-pong, unbuffered, plain Tasks",
            unit="round trips",
            go_name="PingPong/tasks",
            sizes=_sizes(200, 3_000, 15_000),
            impls={"csp": pingpong_tasks_csp, "asyncio": pingpong_asyncio,
                   "anyio": pingpong_anyio},
            labels={**_stream_labels(0, 1, 0),
                    "csp": "Chan(0) between two TaskGroup tasks (not csp.go)"},
            expected=lambda n: (n, _tri(n) + n),
            goal=None,
            extra={"go_ref": "PingPong"},  # Go has goroutines only
        ),
    ]
    for cap, quick, full in ((0, 5_000, 25_000), (1, 8_000, 40_000),
                             (64, 25_000, 125_000), (1024, 25_000, 125_000)):
        benches.append(
            Bench(
                key=f"spsc/cap={cap}",
                pattern="spsc",
                title=f"SPSC stream, cap {cap}" + (" (unbuffered)" if cap == 0 else ""),
                unit="items",
                go_name=f"SPSC/cap={cap}",
                sizes=_sizes(300, quick, full),
                impls={"csp": spsc_csp(cap), "asyncio": spsc_asyncio(cap),
                       "anyio": spsc_anyio(cap)},
                labels=_stream_labels(cap, max(cap, 1), cap),
                expected=lambda n: (n, _tri(n)),
                goal=3.0 if cap == 0 else 2.0 if cap >= 64 else None,
            )
        )
    benches += [
        Bench(
            key="fanin",
            pattern="fanin",
            title=f"fan-in, {FAN} producers -> 1",
            unit="items",
            go_name="FanIn",
            sizes=_sizes(400, 12_000, 60_000),
            impls={"csp": fanin_csp, "asyncio": fanin_asyncio, "anyio": fanin_anyio},
            labels=_stream_labels(CAP, CAP, CAP),
            expected=lambda n: (n, _tri(n)),
            goal=2.0,
        ),
        Bench(
            key="workerpool",
            pattern="workerpool",
            title=f"worker pool, 1 -> {FAN} workers -> 1",
            unit="jobs",
            go_name="WorkerPool",
            sizes=_sizes(400, 6_000, 30_000),
            impls={"csp": pool_csp, "asyncio": pool_asyncio, "anyio": pool_anyio},
            labels={
                "csp": f"2 x Chan({CAP}), close",
                "asyncio": f"2 x Queue({CAP}), sentinels",
                "anyio": f"2 x memory stream({CAP}), aclose",
            },
            expected=lambda n: (n, n * n),
            goal=2.0,
        ),
        Bench(
            key="pipeline",
            pattern="pipeline",
            title=f"pipeline, {STAGES} stages",
            unit="items",
            go_name="Pipeline",
            sizes=_sizes(300, 3_000, 15_000),
            impls={"csp": pipeline_csp, "asyncio": pipeline_asyncio, "anyio": pipeline_anyio},
            labels={
                "csp": f"{STAGES + 1} x Chan({CAP})",
                "asyncio": f"{STAGES + 1} x Queue({CAP})",
                "anyio": f"{STAGES + 1} x memory stream({CAP})",
            },
            expected=lambda n: (n, _tri(n) + STAGES * n),
            goal=2.0,
        ),
        Bench(
            key="select",
            pattern="select",
            title=f"select over {SELECT_WAYS} channels",
            unit="items",
            go_name="Select4",
            sizes=_sizes(300, 5_000, 25_000),
            impls={"csp": select_csp, "asyncio": select_asyncio, "anyio": select_anyio},
            labels={
                "csp": f"csp.select over {SELECT_WAYS} x Chan({SELECT_CAP})",
                "asyncio": f"asyncio.wait(FIRST_COMPLETED) on get() tasks, "
                f"{SELECT_WAYS} x Queue({SELECT_CAP})",
                "anyio": f"forwarder tasks into one stream(0), "
                f"{SELECT_WAYS} x memory stream({SELECT_CAP})",
            },
            expected=lambda n: (n, _tri(n)),
            goal=10.0,
        ),
        Bench(
            key="eos",
            pattern="eos",
            title=f"end-of-stream, 1 -> {EOS_CONSUMERS} consumers",
            unit="items",
            go_name="EndOfStream",
            sizes=_sizes(300, 8_000, 40_000),
            impls={"csp": eos_csp, "asyncio": eos_asyncio, "anyio": eos_anyio},
            labels={
                "csp": f"Chan({CAP}), close() + async for",
                "asyncio": f"Queue({CAP}), "
                + ("shutdown()" if HAS_QUEUE_SHUTDOWN else f"{EOS_CONSUMERS} sentinels"),
                "anyio": f"memory stream({CAP}), aclose() + async for",
            },
            expected=lambda n: (n, _tri(n)),
        ),
        Bench(
            key="mutex/uncontended",
            pattern="mutex",
            title="mutex, uncontended",
            unit="lock ops",
            go_name="Mutex/uncontended",
            sizes=_sizes(500, 12_000, 60_000),
            impls={
                "csp": lock_uncontended(_csp_mutex),
                "asyncio": lock_uncontended(asyncio.Lock),
                "anyio": lock_uncontended(anyio.Lock),
            },
            labels={"csp": "csp.Mutex", "asyncio": "asyncio.Lock", "anyio": "anyio.Lock"},
            expected=lambda n: (n, n),
            requires=("Mutex",),
            goal=1.5,
        ),
        Bench(
            key=f"mutex/contended{FAN}",
            pattern="mutex",
            title=f"mutex, {FAN}-way contended",
            unit="lock ops",
            go_name=f"Mutex/contended{FAN}",
            sizes=_sizes(200, 5_000, 25_000),
            impls={
                "csp": lock_contended("csp", _csp_mutex),
                "asyncio": lock_contended("asyncio", asyncio.Lock),
                "anyio": lock_contended("anyio", anyio.Lock),
            },
            labels={"csp": "csp.Mutex", "asyncio": "asyncio.Lock", "anyio": "anyio.Lock"},
            expected=lambda n: (n, n),
            requires=("Mutex",),
            goal=1.5,
        ),
        Bench(
            key="semaphore",
            pattern="mutex",
            title=f"semaphore({SEM_SLOTS}), {FAN} tasks",
            unit="acquires",
            go_name="Semaphore",
            sizes=_sizes(200, 5_000, 25_000),
            impls={
                "csp": semaphore_contended("csp", _csp_semaphore),
                "asyncio": semaphore_contended("asyncio", asyncio.Semaphore),
                "anyio": semaphore_contended("anyio", anyio.Semaphore),
            },
            labels={
                "csp": f"csp.Semaphore({SEM_SLOTS})",
                "asyncio": f"asyncio.Semaphore({SEM_SLOTS})",
                "anyio": f"anyio.Semaphore({SEM_SLOTS})",
            },
            expected=lambda n: (n, SEM_SLOTS),
            requires=("Semaphore",),
        ),
        Bench(
            key="spawn",
            pattern="spawn",
            title="spawn and join",
            unit="tasks",
            go_name="SpawnJoin",
            sizes=_sizes(300, 10_000, 10_000),
            impls={"csp": spawn_csp, "asyncio": spawn_asyncio, "anyio": spawn_anyio},
            labels={
                "csp": "csp.go + WaitGroup",
                "asyncio": "asyncio.gather",
                "anyio": "task group",
            },
            expected=lambda n: (n, _tri(n)),
            requires=("WaitGroup",),
            goal=1.0,
        ),
    ]
    for k in (1, FAN):
        benches.append(
            Bench(
                key=f"broadcast/subs={k}",
                pattern="broadcast",
                title=f"broadcast, 1 -> {k} subscriber" + ("s" if k > 1 else ""),
                unit="values",
                go_name=f"Broadcast/subs={k}",
                sizes=_sizes(200, 4_000 // k, 20_000 // k),
                impls={"csp": broadcast_csp(k), "asyncio": fanout_asyncio(k),
                       "anyio": fanout_anyio(k)},
                labels={"csp": f"csp.Broadcast({CAP})",
                        "asyncio": f"{k} x Queue({CAP}), hand-written fan-out",
                        "anyio": f"{k} x memory stream({CAP})"},
                expected=lambda n: (n, _tri(n)),
                requires=("Broadcast",),
            )
        )
    benches.append(
        Bench(
            key=f"broadcast/chans={FAN}",
            pattern="broadcast",
            title=f"broadcast, 1 -> {FAN} by hand (a Chan each)",
            unit="values",
            go_name=f"Broadcast/chans={FAN}",
            sizes=_sizes(200, 4_000 // FAN, 20_000 // FAN),
            impls={"csp": fanout_chans_csp(FAN), "asyncio": fanout_asyncio(FAN),
                   "anyio": fanout_anyio(FAN)},
            labels={"csp": f"{FAN} x Chan({CAP}), hand-written fan-out",
                    "asyncio": f"{FAN} x Queue({CAP}), hand-written fan-out",
                    "anyio": f"{FAN} x memory stream({CAP})"},
            expected=lambda n: (n, _tri(n)),
        )
    )
    return benches


BENCHES: list[Bench] = _build()
PATTERNS: tuple[str, ...] = tuple(dict.fromkeys(b.pattern for b in BENCHES))
# The scale/memory benchmark is a separate kind of run (benchmarks/scale.py).
SCALE = "scale"
