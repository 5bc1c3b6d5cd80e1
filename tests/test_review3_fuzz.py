"""Review 3: seeded random programs mixing goroutines and plain Tasks on buffered and
unbuffered channels, select (parked and polling), plain send/recv under
``asyncio.timeout`` and a Mutex, with random cancellations from a chaos task.

Invariant: every value whose send returned normally is received exactly once, and no
value whose send raised (cancelled, timed out) is ever received; the Mutex is never
held by two tasks (nor a writer with anyone, nor the semaphore by three) and all
end free with no waiter. Workers catch cancellations and
carry on (``uncancel()``), which exercises re-delivered cancellations too.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest
from conftest import reference_task

import csp


async def _program(seed: int) -> dict[str, Any]:
    rnd = random.Random(seed)
    loop = asyncio.get_running_loop()
    chans = [csp.Chan[int](rnd.choice([0, 0, 1, 3])) for _ in range(rnd.randint(1, 4))]
    mu = csp.Mutex()
    sent: list[int] = []
    received: list[int] = []
    stats = Counter[str]()
    closing = [False]
    next_id = [0]

    def me() -> asyncio.Task[Any]:
        t = asyncio.current_task()
        assert t is not None
        return t

    rw = csp.RWMutex()
    sem = csp.Semaphore(2)
    holders = Counter[str]()

    async def hold(r: random.Random, kind: str) -> None:
        holders[kind] += 1
        try:
            assert holders["mutex"] <= 1, "two holders of the mutex"
            assert holders["writer"] <= 1 and not (holders["writer"] and holders["reader"])
            assert holders["sem"] <= 2
            stats[kind] += 1
            if r.random() < 0.5:
                await asyncio.sleep(0)
        finally:
            holders[kind] -= 1

    async def critical(r: random.Random) -> None:
        k = r.random()
        if k < 0.4:
            async with mu:
                await hold(r, "mutex")
        elif k < 0.6:
            async with rw:
                await hold(r, "writer")
        elif k < 0.8:
            async with rw.rlocker():
                await hold(r, "reader")
        else:
            async with sem:
                await hold(r, "sem")

    async def produce_one(r: random.Random) -> None:
        v = next_id[0]
        next_id[0] += 1
        mode = r.random()
        if mode < 0.5:
            await r.choice(chans).send(v)
            sent.append(v)
        elif mode < 0.8:
            a, b = r.choice(chans), r.choice(chans)
            await csp.select((a.send, v), (b.send, v))
            sent.append(v)
        else:
            async with asyncio.timeout_at(loop.time() + r.choice([0.0, 0.001])):
                await r.choice(chans).send(v)
                sent.append(v)

    async def producer(r: random.Random, n: int) -> None:
        t = me()
        done = 0
        while done < n:
            try:
                if r.random() < 0.1:
                    await critical(r)
                else:
                    await produce_one(r)
                    done += 1
            except asyncio.CancelledError:
                stats["producer cancelled"] += 1
                t.uncancel()
                done += 1  # the value is given up
            except TimeoutError:
                stats["producer timeout"] += 1
                done += 1

    async def consume_one(r: random.Random) -> None:
        mode = r.random()
        if mode < 0.5:
            cases = [c.recv_ok for c in chans]
            r.shuffle(cases)
            _, (v, ok) = await csp.select(*cases)
            if ok:
                received.append(v)
        elif mode < 0.75:
            i, res = await csp.select(*[c.recv_ok for c in chans], default=True)
            if i >= 0 and res[1]:
                received.append(res[0])
            await csp.gosched()
        else:
            async with asyncio.timeout_at(loop.time() + r.choice([0.0, 0.001])):
                v, ok = await r.choice(chans).recv_ok()
                if ok:
                    received.append(v)

    async def consumer(r: random.Random) -> None:
        t = me()
        while not closing[0]:
            try:
                if r.random() < 0.1:
                    await critical(r)
                else:
                    await consume_one(r)
            except asyncio.CancelledError:
                stats["consumer cancelled"] += 1
                t.uncancel()
            except TimeoutError:
                stats["consumer timeout"] += 1
        # drain what the closed channels still hold (owed cancellations may surface)
        for c in chans:
            while True:
                try:
                    v, ok = await c.recv_ok()
                except asyncio.CancelledError:
                    t.uncancel()
                    continue
                if not ok:
                    break
                received.append(v)

    def spawn(coro: Any) -> asyncio.Task[Any]:
        x = rnd.random()
        if x < 0.4:
            stats["goroutines"] += 1
            return csp.go(coro)  # type: ignore[no-any-return]
        stats["tasks"] += 1
        if x < 0.7:
            return asyncio.create_task(coro)  # driven by csp once it parks
        return reference_task(coro)  # asyncio alone steps it

    producers = [spawn(producer(random.Random(rnd.random()), rnd.randint(5, 40)))
                 for _ in range(rnd.randint(1, 4))]
    consumers = [spawn(consumer(random.Random(rnd.random())))
                 for _ in range(rnd.randint(1, 4))]
    workers = producers + consumers

    async def chaos() -> None:
        while not all(p.done() for p in producers):
            live = [w for w in workers if not w.done()]
            for _ in range(rnd.choice([1, 1, 2])):
                rnd.choice(live).cancel(rnd.choice([None, "chaos"]))
            stats["chaos"] += 1
            for _ in range(rnd.randint(0, 4)):
                await asyncio.sleep(0)

    async with asyncio.timeout(5):
        ch_task = asyncio.create_task(chaos())
        await asyncio.wait(producers)
        await ch_task
        closing[0] = True
        for c in chans:
            c.close()
        await asyncio.wait(consumers)
    for w in workers:
        assert not w.cancelled() and w.exception() is None, w
    return {
        "sent": sent, "received": received, "stats": stats,
        "mu": (repr(mu), repr(rw), repr(sem)),
        "chans": [repr(c) for c in chans],
    }


FREE = ("<csp.Mutex unlocked>", "<csp.RWMutex unlocked reader_waiters=0 writer_waiters=0>",
        "<csp.Semaphore held=0/2 waiters=0>")


@pytest.mark.slow
def test_random_programs_lose_and_duplicate_nothing(loop_name: str) -> None:
    """Invariant: under random cancellations and timeouts, values sent == values
    received, as multisets of unique ids (none lost, none duplicated, none received
    from a send that raised); the mutex is exclusive and ends free."""
    totals = Counter[str]()
    for seed in range(4000):
        out = csp.run(_program, seed, loop=loop_name)
        sent, received = out["sent"], out["received"]
        assert len(set(sent)) == len(sent), seed
        dup = [v for v, n in Counter(received).items() if n > 1]
        assert dup == [], (seed, dup)
        assert sorted(received) == sorted(sent), (
            seed, sorted(set(sent) - set(received)), sorted(set(received) - set(sent)))
        assert out["mu"] == FREE, seed
        assert all("len=0" in c and "waiters=0 send_waiters=0" in c
                   for c in out["chans"]), (seed, out["chans"])
        totals.update(out["stats"])
        totals["values"] += len(sent)
    # the fuzz really exercised what it claims to
    for key in ("producer cancelled", "consumer cancelled", "producer timeout",
                "consumer timeout", "mutex", "writer", "reader", "sem", "goroutines",
                "tasks"):
        assert totals[key] > 20, (key, totals)


def test_random_program_smoke(loop_name: str) -> None:
    """A few seeds of the same fuzz in the default suite (same invariant)."""
    for seed in (1, 2, 3):
        out = csp.run(_program, seed, loop=loop_name)
        assert sorted(out["received"]) == sorted(out["sent"])
        assert len(set(out["received"])) == len(out["received"])
        assert out["mu"] == FREE
