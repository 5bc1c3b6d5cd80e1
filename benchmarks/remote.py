"""The remote rows (``python -m benchmarks --nats``): csp.nats channels against raw
nats-py JetStream doing the same work, on a nats-server this module starts
(:class:`csp.nats.LocalServer`: 127.0.0.1, a free port, a temporary file store).

Rows, each on the asyncio loop and on uvloop; in the first two, sender and receiver are
on two connections in one process (as two processes would be, without their start-up in
the timing):

* ``stream cap=64``: one sender, one receiver, ``n`` values. csp: ``await ch.send(i)`` /
  ``await ch.recv()`` on a ``hub.chan(name, cap=64)``. Raw: a work-queue stream with
  ``max_msgs=64`` and discard-new (a full stream rejects: the sender backs off and
  retries, as csp does), ``js.publish`` each value, a durable pull consumer,
  ``fetch(1)`` and ``ack`` each. csp's receive also claims its value (one
  key-value create: what makes "exactly once" hold when the server redelivers);
* ``ping-pong cap=0``: ``n`` round trips over two unbuffered csp channels (each send
  returns once the other side took the value). Raw: the same two messages per round
  trip through two streams, publish + fetch + ack each (no rendezvous: raw JetStream
  has none);
* ``worker pool, 4 processes``: ``n`` jobs through 4 worker processes (``python -c``,
  on the same loop as the parent, each on its own connection), started before the
  clock: it starts once each has said it is ready and stops when all ``n`` results are
  in. csp: a ``hub.chan(name, cap=64)`` of jobs and one of results; each worker does
  ``async for job in jobs: await results.send(job * 2)`` and the parent sends the
  jobs, receives the results, then closes the jobs channel (the workers drain it and
  exit). Raw: a jobs stream as in ``stream cap=64`` with one durable pull consumer the
  4 workers share (``fetch(1)`` + ``ack`` each), a results stream the parent fetches
  from, and one ``-1`` per worker at the end.

Every sample checks its checksum; the ratio is csp's time over raw's, the median of
paired repetitions (raw and csp alternate).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from benchmarks.runner import LOOPS, loop_factory

# n per row: stream, ping-pong, worker pool
SIZES = {"tiny": (40, 10, 40), "quick": (400, 100, 400), "full": (3000, 600, 3000)}
CAP = 64
WORKERS = 4
REPO = str(Path(__file__).resolve().parent.parent)  # on the workers' sys.path
READY_TIMEOUT = 60.0  # seconds for a worker to start, connect and say "ready"
EXIT_TIMEOUT = 60.0  # seconds for a worker to exit once told the jobs are over


def _name() -> str:
    return "b" + uuid.uuid4().hex[:12]


async def _csp_stream(url: str, n: int) -> float:
    import csp.nats as cn

    async with await cn.connect(url) as a, await cn.connect(url) as b:
        name = _name()
        tx, rx = await a.chan(name, cap=CAP), await b.chan(name, cap=CAP)
        t0 = time.perf_counter()

        async def send() -> None:
            for i in range(n):
                await tx.send(i)

        s = asyncio.ensure_future(send())
        total = 0
        for _ in range(n):
            v = await rx.recv()
            assert v is not None
            total += v
        await s
        dt = time.perf_counter() - t0
        await a._js.delete_stream(tx._stream)
    _check(total, n)
    return dt


async def _csp_pingpong(url: str, n: int) -> float:
    import csp.nats as cn

    async with await cn.connect(url) as a, await cn.connect(url) as b:
        name = _name()
        ping_a, pong_a = await a.chan(name + "p", cap=0), await a.chan(name + "q", cap=0)
        ping_b, pong_b = await b.chan(name + "p", cap=0), await b.chan(name + "q", cap=0)

        async def echo() -> None:
            for _ in range(n):
                await pong_b.send(await ping_b.recv())

        e = asyncio.ensure_future(echo())
        t0 = time.perf_counter()
        total = 0
        for i in range(n):
            await ping_a.send(i)
            v = await pong_a.recv()
            assert v is not None
            total += v
        dt = time.perf_counter() - t0
        await e
        for ch in (ping_a, pong_a):
            await a._js.delete_stream(ch._stream)
    _check(total, n)
    return dt


def _raw_names(name: str) -> tuple[str, str]:
    return f"RAW_{name}", f"raw.{name}"


async def _raw_stream_of(js: Any, name: str, cap: int) -> tuple[str, str]:
    from nats.js import api

    stream, subject = _raw_names(name)
    await js.add_stream(api.StreamConfig(
        name=stream, subjects=[subject], retention=api.RetentionPolicy.WORK_QUEUE,
        max_msgs=cap, discard=api.DiscardPolicy.NEW, storage=api.StorageType.FILE))
    return stream, subject


async def _raw_publish(js: Any, subject: str, stream: str, data: bytes) -> None:
    from nats.js.errors import ServiceUnavailableError

    delay = 0.001
    while True:
        try:
            await js.publish(subject, data, stream=stream,
                             headers={"Nats-Msg-Id": uuid.uuid4().hex})
            return
        except ServiceUnavailableError as e:  # full (10077): back off, as csp does
            if e.err_code != 10077:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)


async def _raw_take(sub: Any) -> Any:
    from nats.errors import TimeoutError as NatsTimeout

    while True:
        try:
            m = (await sub.fetch(1, timeout=0.5))[0]
        except NatsTimeout:
            continue
        await m.ack()
        return json.loads(m.data)


async def _raw_stream(url: str, n: int) -> float:
    import nats

    a, b = await nats.connect(url), await nats.connect(url)
    try:
        ja, jb = a.jetstream(), b.jetstream()
        stream, subject = await _raw_stream_of(ja, _name(), CAP)
        sub = await jb.pull_subscribe(subject, durable="raw", stream=stream)
        t0 = time.perf_counter()

        async def send() -> None:
            for i in range(n):
                await _raw_publish(ja, subject, stream, json.dumps(i).encode())

        s = asyncio.ensure_future(send())
        total = 0
        for _ in range(n):
            total += await _raw_take(sub)
        await s
        dt = time.perf_counter() - t0
        await ja.delete_stream(stream)
    finally:
        await a.close()
        await b.close()
    _check(total, n)
    return dt


async def _raw_pingpong(url: str, n: int) -> float:
    import nats

    a, b = await nats.connect(url), await nats.connect(url)
    try:
        ja, jb = a.jetstream(), b.jetstream()
        name = _name()
        ping = await _raw_stream_of(ja, name + "p", 1)
        pong = await _raw_stream_of(ja, name + "q", 1)
        ping_sub = await jb.pull_subscribe(ping[1], durable="raw", stream=ping[0])
        pong_sub = await ja.pull_subscribe(pong[1], durable="raw", stream=pong[0])

        async def echo() -> None:
            for _ in range(n):
                v = await _raw_take(ping_sub)
                await _raw_publish(jb, pong[1], pong[0], json.dumps(v).encode())

        e = asyncio.ensure_future(echo())
        t0 = time.perf_counter()
        total = 0
        for i in range(n):
            await _raw_publish(ja, ping[1], ping[0], json.dumps(i).encode())
            total += await _raw_take(pong_sub)
        dt = time.perf_counter() - t0
        await e
        for s in (ping, pong):
            await ja.delete_stream(s[0])
    finally:
        await a.close()
        await b.close()
    _check(total, n)
    return dt


# -- worker pool: the workers are processes ---------------------------------------------

_WORKER = ("import sys; sys.path.insert(0, sys.argv[1]); "
           "from benchmarks.remote import _worker; _worker(sys.argv[2:])")


def _loop_name() -> str:
    """The running loop's kind, for the workers (they run the parent's)."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") \
        else "asyncio"


@contextlib.asynccontextmanager
async def _workers(kind: str, url: str, jobs: str,
                   results: str) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Start :data:`WORKERS` worker processes (``kind``: "csp" or "raw") and wait until
    each has connected and said so; on the way out, kill and reap those still running."""
    procs: list[asyncio.subprocess.Process] = []
    try:
        for _ in range(WORKERS):
            procs.append(await asyncio.create_subprocess_exec(
                sys.executable, "-c", _WORKER, REPO, kind, url, jobs, results, _loop_name(),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        for p in procs:
            assert p.stdout is not None
            try:
                line = await asyncio.wait_for(p.stdout.readline(), READY_TIMEOUT)
            except TimeoutError:
                line = b""
            if line.strip() != b"ready":
                await _failed(p, "did not start")
        yield procs
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
        for p in procs:
            await p.communicate()  # (reaps it and closes its pipes)


async def _failed(p: asyncio.subprocess.Process, what: str, err: bytes | None = None) -> None:
    """Raise that worker ``p`` ``what``, with the end of its stderr (killed first)."""
    if p.returncode is None:
        p.kill()
    if err is None:
        _, err = await p.communicate()
    raise RuntimeError(f"worker process {what} (exit {p.returncode}): "
                       f"{err.decode(errors='replace').strip()[-1000:]}")


async def _while_alive(procs: list[asyncio.subprocess.Process], aw: Awaitable[int]) -> int:
    """``await aw``, failing as soon as a worker exits (a worker's error would otherwise
    leave the parent waiting for its results for ever)."""
    work = asyncio.ensure_future(aw)
    exits = {asyncio.ensure_future(p.wait()): p for p in procs}
    try:
        await asyncio.wait([work, *exits], return_when=asyncio.FIRST_COMPLETED)
        for t, p in exits.items():
            if t.done() and not work.done():
                await _failed(p, "exited before the end")
        return work.result()
    finally:
        for t in (work, *exits):
            t.cancel()


async def _exited(procs: list[asyncio.subprocess.Process]) -> None:
    """Wait for every worker to exit by itself, each with status 0."""
    for p in procs:
        try:
            _, err = await asyncio.wait_for(p.communicate(), EXIT_TIMEOUT)
        except TimeoutError:
            await _failed(p, f"did not exit within {EXIT_TIMEOUT:.0f} s")
        if p.returncode != 0:
            await _failed(p, "failed", err)


async def _send_and_collect(n: int, send: Callable[[int], Awaitable[None]],
                            take: Callable[[], Awaitable[Any]]) -> int:
    """Send jobs 0..n-1 while taking n results; their sum."""
    async def jobs() -> None:
        for i in range(n):
            await send(i)

    s = asyncio.ensure_future(jobs())
    try:
        total = 0
        for _ in range(n):
            v = await take()
            assert v is not None
            total += v
        await s
    finally:
        s.cancel()
    return total


async def _csp_pool(url: str, n: int) -> float:
    import csp.nats as cn

    async with await cn.connect(url) as hub:
        name = _name()
        jobs, results = await hub.chan(name + "j", cap=CAP), await hub.chan(name + "r", cap=CAP)
        async with _workers("csp", url, jobs.name, results.name) as procs:
            t0 = time.perf_counter()
            total = await _while_alive(procs, _send_and_collect(n, jobs.send, results.recv))
            dt = time.perf_counter() - t0
            await jobs.close()  # the workers drain it and exit
            await _exited(procs)
        for ch in (jobs, results):
            await hub._js.delete_stream(ch._stream)
    _check(total, n, 2)
    return dt


async def _raw_pool(url: str, n: int) -> float:
    import nats
    from nats.js import api

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        name = _name()
        jobs = await _raw_stream_of(js, name + "j", CAP)
        results = await _raw_stream_of(js, name + "r", CAP)
        # the consumer the workers share (created here: not by 4 of them at once)
        await js.add_consumer(jobs[0], api.ConsumerConfig(
            name="raw", durable_name="raw", filter_subject=jobs[1]))
        sub = await js.pull_subscribe(results[1], durable="raw", stream=results[0])

        async def send(i: int) -> None:
            await _raw_publish(js, jobs[1], jobs[0], json.dumps(i).encode())

        async with _workers("raw", url, name + "j", name + "r") as procs:
            t0 = time.perf_counter()
            total = await _while_alive(procs, _send_and_collect(n, send,
                                                                lambda: _raw_take(sub)))
            dt = time.perf_counter() - t0
            for _ in range(WORKERS):  # one end marker each
                await send(-1)
            await _exited(procs)
        for s in (jobs, results):
            await js.delete_stream(s[0])
    finally:
        await nc.close()
    _check(total, n, 2)
    return dt


async def _csp_worker(url: str, jobs_name: str, results_name: str) -> None:
    import csp.nats as cn

    async with await cn.connect(url) as hub:
        jobs = await hub.chan(jobs_name, cap=CAP)
        results = await hub.chan(results_name, cap=CAP)
        print("ready", flush=True)
        async for job in jobs:
            await results.send(job * 2)


async def _raw_worker(url: str, jobs_name: str, results_name: str) -> None:
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        jobs, results = _raw_names(jobs_name), _raw_names(results_name)
        sub = await js.pull_subscribe(jobs[1], durable="raw", stream=jobs[0])
        print("ready", flush=True)
        while (job := await _raw_take(sub)) >= 0:
            await _raw_publish(js, results[1], results[0], json.dumps(job * 2).encode())
    finally:
        await nc.close()


def _worker(argv: list[str]) -> None:
    """A worker process's main: ``argv`` is kind (csp, raw), url, the jobs' and the
    results' channel names, loop."""
    kind, url, jobs, results, loop = argv
    fn = {"csp": _csp_worker, "raw": _raw_worker}[kind]
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        runner.run(fn(url, jobs, results))


def _check(total: int, n: int, times: int = 1) -> None:
    """``total`` should be ``times`` times the sum of 0..n-1."""
    want = times * n * (n - 1) // 2
    if total != want:
        raise AssertionError(f"wrong checksum {total}, expected {want}")


Sample = Callable[[str, int], Coroutine[Any, Any, float]]
ROWS: dict[str, tuple[Sample, Sample, int]] = {
    f"stream cap={CAP}": (_csp_stream, _raw_stream, 0),
    "ping-pong cap=0": (_csp_pingpong, _raw_pingpong, 1),
    f"worker pool, {WORKERS} processes": (_csp_pool, _raw_pool, 2),
}


def run(size: str, reps: int, loops: list[str],
        tick: Callable[[str], None]) -> list[dict[str, Any]]:
    """Measure every row on every loop: ``reps`` paired samples each (raw, then csp,
    after one warm-up of each), medians and the median of the paired ratios."""
    import csp.nats as cn

    out = []
    with cn.LocalServer() as srv:
        for loop in loops:
            for row, (csp_fn, raw_fn, which) in ROWS.items():
                n = SIZES[size][which]
                runner = asyncio.Runner(loop_factory=loop_factory(loop))
                try:
                    tick(f"{loop} · {row} · warm-up")
                    runner.run(raw_fn(srv.url, n))
                    runner.run(csp_fn(srv.url, n))
                    raw_t: list[float] = []
                    csp_t: list[float] = []
                    for r in range(reps):
                        tick(f"{loop} · {row} · {r + 1}/{reps}")
                        raw_t.append(runner.run(raw_fn(srv.url, n)))
                        csp_t.append(runner.run(csp_fn(srv.url, n)))
                finally:
                    runner.close()
                out.append({
                    "row": row, "loop": loop, "n": n,
                    "csp_s": statistics.median(csp_t), "raw_s": statistics.median(raw_t),
                    "ratio": statistics.median(c / r for c, r in zip(csp_t, raw_t, strict=True)),
                })
    return out


def steps(reps: int, loops: list[str]) -> int:
    return len(loops) * len(ROWS) * (reps + 1)


def table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    t = Table(title="csp.nats against raw nats-py JetStream (same server, same work)")
    for col in ("row", "loop", "n", "csp µs/op", "raw µs/op", "csp/raw time"):
        t.add_column(col, justify="left" if col in ("row", "loop") else "right")
    for r in rows:
        t.add_row(r["row"], r["loop"], f"{r['n']:,}", f"{r['csp_s'] / r['n'] * 1e6:,.0f}",
                  f"{r['raw_s'] / r['n'] * 1e6:,.0f}", f"{r['ratio']:.2f}x")
    return t


__all__ = ["LOOPS", "ROWS", "run", "steps", "table"]
