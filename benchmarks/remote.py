"""The remote rows (``python -m benchmarks --nats``): csp.nats channels against raw
nats-py JetStream doing the same work, on a nats-server this module starts
(:class:`csp.nats.LocalServer`: 127.0.0.1, a free port, a temporary file store).

Rows, each on the asyncio loop and on uvloop, sender and receiver on two connections
in one process (as two processes would be, without their start-up in the timing):

* ``stream cap=64``: one sender, one receiver, ``n`` values. csp: ``await ch.send(i)`` /
  ``await ch.recv()`` on a ``hub.chan(name, cap=64)``. Raw: a work-queue stream with
  ``max_msgs=64`` and discard-new (a full stream rejects: the sender backs off and
  retries, as csp does), ``js.publish`` each value, a durable pull consumer,
  ``fetch(1)`` and ``ack`` each. csp's receive also claims its value (one delete
  request: what makes "exactly once" hold when the server redelivers);
* ``ping-pong cap=0``: ``n`` round trips over two unbuffered csp channels (each send
  returns once the other side took the value). Raw: the same two messages per round
  trip through two streams, publish + fetch + ack each (no rendezvous: raw JetStream
  has none).

Every sample checks its checksum; the ratio is csp's time over raw's, the median of
paired repetitions (raw and csp alternate).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from benchmarks.runner import LOOPS, loop_factory

SIZES = {"tiny": (40, 10), "quick": (400, 100), "full": (3000, 600)}  # stream n, ping-pong n
CAP = 64


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


async def _raw_stream_of(js: Any, name: str, cap: int) -> tuple[str, str]:
    from nats.js import api

    stream, subject = f"RAW_{name}", f"raw.{name}"
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


def _check(total: int, n: int) -> None:
    if total != n * (n - 1) // 2:
        raise AssertionError(f"wrong checksum {total}, expected {n * (n - 1) // 2}")


Sample = Callable[[str, int], Coroutine[Any, Any, float]]
ROWS: dict[str, tuple[Sample, Sample, int]] = {
    f"stream cap={CAP}": (_csp_stream, _raw_stream, 0),
    "ping-pong cap=0": (_csp_pingpong, _raw_pingpong, 1),
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
