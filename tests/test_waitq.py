"""csp/_waitq.py: the FIFO of parked operations (O(1) unlink) that channels, select
and the sync primitives share. Its invariants are checked after every step of seeded
random push / pop / unlink sequences, against a plain list as the model."""

from __future__ import annotations

import asyncio
import random

import pytest

import csp
from csp._waiter import Waiter
from csp._waitq import WaitQ


@pytest.mark.parametrize("seed", range(20))
def test_random_operations_keep_fifo_order_and_invariants(seed: int) -> None:
    """push appends, pop takes the head, unlink takes any node out in O(1): the queue
    always holds exactly the model's nodes in the model's order, each linked to it."""
    rng = random.Random(seed)
    q = WaitQ()
    model: list[Waiter] = []
    for step in range(400):
        op = rng.random()
        if op < 0.45 or not model:
            w = Waiter(f"w{step}")
            q.push(w)
            model.append(w)
        elif op < 0.75:
            assert q.pop() is model.pop(0)
        else:
            w = model.pop(rng.randrange(len(model)))
            q.unlink(w)
            assert w.q is None and w.prev is None and w.next is None
        q._invariants()
        assert list(q) == model
        assert len(q) == len(model) and bool(q) == bool(model)
    while model:
        assert q.pop() is model.pop(0)
    assert q.pop() is None and q.head is None and q.tail is None


def test_withdrawn_waiter_leaves_its_queue_and_lets_its_value_go() -> None:
    """A pending waiter that is withdrawn unlinks itself at once (no stale entry), and
    the value a parked sender offered is released with it."""
    q = WaitQ()
    a, b, c = Waiter("a", value=bytearray(8)), Waiter("b", value="kept"), Waiter("c")
    for w in (a, b, c):
        q.push(w)
    a.withdraw()
    assert list(q) == [b, c] and a.value is None
    c.withdraw("why")
    assert list(q) == [b] and c.value == "why"
    q._invariants()


def test_iteration_survives_unlinking_the_current_node() -> None:
    """Walking a queue while nodes leave it (close() completes them one by one) sees
    every node once."""
    q = WaitQ()
    nodes = [Waiter(str(i)) for i in range(5)]
    for n in nodes:
        q.push(n)
    seen = []
    for n in q:
        seen.append(n)
        q.unlink(n)
    assert seen == nodes and q.head is None


# -- in use: nothing a finished operation left stays queued --------------------------


@pytest.mark.asyncio
async def test_select_losers_do_not_accumulate() -> None:
    """10,000 selects that always win on b leave nothing in a's receive queue: each
    select's losing case is unlinked when it wins (Go's third pass)."""
    a, b = csp.Chan[int](), csp.Chan[int]()

    async def feeder() -> None:
        for i in range(10_000):
            await b.send(i)

    t = csp.go(feeder)
    total = 0
    for _ in range(10_000):
        i, v = await csp.select(a.recv, b.recv)
        assert i == 1
        total += v
    await t
    assert total == sum(range(10_000))
    assert len(a._recvq) == 0
    assert "recv_waiters=0" in repr(a)


@pytest.mark.asyncio
async def test_cancelled_receivers_do_not_accumulate() -> None:
    """Receivers cancelled while parked leave no entry behind (withdrawn at once)."""
    ch = csp.Chan[int]()
    for _ in range(2_000):
        t = asyncio.create_task(ch.recv())
        await asyncio.sleep(0)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        assert len(ch._recvq) == 0
    r = asyncio.create_task(ch.recv())
    await asyncio.sleep(0)
    await ch.send(42)
    assert await r == 42
