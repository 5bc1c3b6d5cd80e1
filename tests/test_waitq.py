"""csp/_waitq.py: the FIFO of parked operations (O(1) unlink) that channels, select
and the sync primitives share. Its invariants are checked after every step of seeded
random push / pop / unlink sequences, against a plain list as the model."""

from __future__ import annotations

import asyncio
import contextlib
import random
from types import SimpleNamespace
from typing import Any

import pytest

import csp
from csp._waiter import CANCELLED, DONE, PENDING, Waiter
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


# -- hand-offs skip waiters whose loop was closed (issue 13 item 10) ---------------------


def dead_waiter(reason: str, value: Any = None) -> Waiter:
    """A pending waiter whose task's loop is closed (as a loop closed by hand leaves
    it): a stand-in waker on a closed loop."""
    loop = asyncio.new_event_loop()
    loop.close()
    w = Waiter(reason, value)
    w.waker = SimpleNamespace(sched=SimpleNamespace(loop=loop, draining=False))  # type: ignore[assignment]
    return w


def live_waiter(reason: str, value: Any = None) -> Waiter:
    """A pending waiter no task waits on yet (completing it wakes nobody)."""
    return Waiter(reason, value)


def test_give_take_and_complete_all_skip_dead_waiters() -> None:
    """give() hands its value to the first waiter that can still run, take() takes the
    value of the first such sender, complete_all() counts only those: dead ones met on
    the way are withdrawn (CANCELLED, unlinked, their value let go) and the queue
    holds only pending entries after each call."""
    q = WaitQ()
    d1, a, d2, b = dead_waiter("d1"), live_waiter("a"), dead_waiter("d2"), live_waiter("b")
    for w in (d1, a, d2, b):
        q.push(w)
    assert q.give("x") is True
    assert (d1.state, a.state, a.value, list(q)) == (CANCELLED, DONE, "x", [d2, b])
    assert q.give("y") is True and (d2.state, b.value, list(q)) == (CANCELLED, "y", [])
    assert q.give("z") is False

    s1, s2, s3 = dead_waiter("s1", "v1"), live_waiter("s2", "v2"), dead_waiter("s3", "v3")
    for w in (s1, s2, s3):
        q.push(w)
    assert q.take("none") == "v2" and s1.value is None and s2.state == DONE
    assert q.take("none") == "none" and s3.state == CANCELLED and s3.value is None
    assert q.head is None

    ws = [dead_waiter("c0"), live_waiter("c1"), live_waiter("c2"), dead_waiter("c3")]
    for w in ws:
        q.push(w)
    assert q.complete_all(None, False) == 2
    assert [w.state for w in ws] == [CANCELLED, DONE, DONE, CANCELLED]
    assert [getattr(w, "ok", None) for w in ws] == [None, False, False, None]
    q._invariants()
    assert q.head is None and q.tail is None


def test_a_dead_waiter_is_withdrawn_with_its_abort_hook() -> None:
    """complete() on a waiter whose loop is closed answers False, wakes nobody and
    runs its on_abort hook once, as a cancellation would (a select's cases leave
    their queues, a Semaphore passes tokens on)."""
    calls: list[str] = []
    w = dead_waiter("w", "offered")
    w.on_abort = lambda _w: calls.append(_w.reason)
    assert w.complete("given") is False
    assert (w.state, w.value, calls, w.on_abort) == (CANCELLED, None, ["w"], None)


@pytest.mark.asyncio
async def test_queues_hold_only_pending_entries_after_mixed_traffic() -> None:
    """The WaitQ invariant in use: after sends, receives, selects that win, lose, time
    out and are cancelled, every node still linked in a queue belongs to a pending
    operation, and once everything is over the queues are empty."""
    chans = [csp.Chan[int]() for _ in range(3)]
    rng = random.Random(7)

    async def op(k: int) -> None:
        c = chans[k % 3]
        d = chans[(k + 1) % 3]
        kind = k % 4
        if kind == 0:
            await csp.select((c.send, k), d.recv, csp.after(0.0005).recv)
        elif kind == 1:
            await csp.select(c.recv, (d.send, k), csp.after(0.0005).recv)
        elif kind == 2:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.0005):
                    await c.send(k)
        else:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.0005):
                    await d.recv()

    tasks = [asyncio.create_task(op(rng.randrange(1000))) for _ in range(60)]
    for t in tasks[::7]:
        t.cancel()
    for _ in range(20):
        await asyncio.sleep(0)
        for c in chans:
            c._invariants()
            for q in (c._recvq, c._sendq):
                assert all(getattr(n, "sel", n).state == PENDING for n in q)
    await asyncio.gather(*tasks, return_exceptions=True)
    assert [(len(c._recvq), len(c._sendq)) for c in chans] == [(0, 0)] * 3


class _Node:
    """A node that is not a Waiter (as a select's per-case node is): the queue reaches
    its links and its completion through attributes and methods."""

    __slots__ = ("done", "next", "ok", "prev", "q", "value", "will")

    def __init__(self, value: object, will: bool = True) -> None:
        self.value = value
        self.will = will  # what complete() answers
        self.done: list[object] = []

    def complete(self, value: object, ok: bool = True) -> bool:
        self.done.append(value)
        return self.will


def test_other_nodes_go_through_their_attributes_and_methods() -> None:
    q = WaitQ()
    a, b, c, d = _Node("a", will=False), _Node("b"), _Node("c"), _Node("d")
    for n in (a, b, c, d):
        q.push(n)
    q._invariants()
    assert q.take("none") == "b" and a.done == [None] and b.done == [None]
    assert a.q is None and a.next is None and a.prev is None  # (dead: unlinked, skipped)
    q.unlink(d)
    q._invariants()
    assert list(q) == [c] and (d.q, d.prev, d.next) == (None, None, None)
    assert q.give(7) is True and c.done == [7]
    assert q.head is None and q.tail is None and q.pop() is None
    assert q.give(8) is False and q.take("none") == "none"


def test_push_survives_a_node_whose_q_setter_drops_the_old_tail() -> None:
    """push links the new node to the tail it read first, even when setting the node's
    ``q`` runs code that removes (and frees) that tail (a review finding: the compiled
    twin used a borrowed tail)."""
    import weakref

    class Plain:
        __slots__ = ("q", "prev", "next", "value", "__weakref__")

    class PopsOnJoin:
        __slots__ = ("_q", "prev", "next", "value")

        @property
        def q(self) -> Any:
            return self._q

        @q.setter
        def q(self, v: Any) -> None:
            self._q = v
            if v is not None:
                v.pop()

    q = WaitQ()
    x = Plain()
    q.push(x)
    wx = weakref.ref(x)
    del x
    y = PopsOnJoin()
    q.push(y)
    assert wx() is not None and y.prev is wx()  # held by the link, as in pure Python
