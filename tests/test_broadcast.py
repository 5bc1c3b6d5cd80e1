"""csp/_broadcast.py: ``csp.Broadcast`` (API.md, Channel family).

Invariants: every subscriber gets every value sent after it subscribed, in the same
order; a send waits until every current subscriber has room (the slowest sets the
pace; ``cap=0``: a receiver waiting on each) and then reaches all of them at once; a
cancelled send reached no subscriber, one that returned reached every subscriber of
that instant; the lagging mode never blocks and counts what each subscriber lost;
unsubscribe and close drain, then ``(None, False)``.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

import csp


async def drain(sub: Any) -> list[Any]:
    return [v async for v in sub]


@pytest.mark.asyncio
async def test_every_subscriber_gets_every_value_in_order_late_ones_later_values() -> None:
    b = csp.Broadcast[int](cap=4)
    s1, s2 = b.subscribe(), b.subscribe()
    for i in range(3):
        await b.send(i)
    s3 = b.subscribe()
    await b.send(3)
    b.close()
    assert [await drain(s) for s in (s1, s2, s3)] == [[0, 1, 2, 3], [0, 1, 2, 3], [3]]
    with pytest.raises(csp.ClosedChannelError, match="send on closed channel"):
        await b.send(4)
    assert await b.subscribe().recv_ok() == (None, False)


@pytest.mark.asyncio
async def test_the_slowest_subscriber_sets_the_pace() -> None:
    """cap=1: the second send waits until the slow subscriber took the first; the fast
    one has received it meanwhile; the send then reaches both."""
    b = csp.Broadcast[int](cap=1)
    fast, slow = b.subscribe(), b.subscribe()
    await b.send(1)
    t = csp.go(b.send, 2)
    assert await fast.recv() == 1
    await csp.gosched()
    assert not t.done() and repr(b).endswith("send_waiters=1>")
    assert await slow.recv() == 1
    await t
    assert (await fast.recv(), await slow.recv()) == (2, 2)
    b._invariants()


@pytest.mark.asyncio
async def test_unbuffered_send_waits_for_a_receiver_on_every_subscriber() -> None:
    b = csp.Broadcast[str]()
    s1, s2 = b.subscribe(), b.subscribe()
    r1 = csp.go(s1.recv)
    t = csp.go(b.send, "x")
    await csp.gosched()
    await csp.gosched()
    assert not t.done()
    r2 = csp.go(s2.recv)
    await t
    assert (await r1, await r2) == ("x", "x")


@pytest.mark.asyncio
async def test_send_with_no_subscribers_completes_at_once() -> None:
    b = csp.Broadcast[int]()
    await b.send(1)
    assert len(b) == 0


@pytest.mark.asyncio
async def test_lagging_mode_never_blocks_and_counts_what_each_lost() -> None:
    b = csp.Broadcast[int](cap=2, overflow="drop_oldest")
    slow, fast = b.subscribe(), b.subscribe()
    got = []
    for i in range(5):
        await b.send(i)
        got.append(await fast.recv())
    assert got == [0, 1, 2, 3, 4] and fast.lagged == 0
    assert [slow.recv_nowait(), slow.recv_nowait()] == [3, 4] and slow.lagged == 3


@pytest.mark.asyncio
async def test_unsubscribe_drains_then_ends_and_releases_a_waiting_send() -> None:
    b = csp.Broadcast[int](cap=1)
    keep, leave = b.subscribe(), b.subscribe()
    await b.send(1)
    assert await keep.recv() == 1
    t = csp.go(b.send, 2)  # waits for `leave`, which holds 1
    await csp.gosched()
    assert not t.done()
    b.unsubscribe(leave)
    b.unsubscribe(leave)  # (twice: nothing)
    await t
    assert await drain(leave) == [1]
    assert await leave.recv_ok() == (None, False)
    assert await keep.recv() == 2 and len(b) == 1


@pytest.mark.asyncio
async def test_close_fails_a_waiting_send_and_subscriptions_drain() -> None:
    b = csp.Broadcast[int](cap=1)
    s = b.subscribe()
    await b.send(1)
    t = csp.go(b.send, 2)
    await csp.gosched()
    b.close()
    with pytest.raises(csp.ClosedChannelError, match="send on closed channel"):
        await t
    assert await drain(s) == [1]
    with pytest.raises(csp.ClosedChannelError, match="close of closed channel"):
        b.close()


@pytest.mark.asyncio
async def test_subscriptions_are_select_cases_and_receive_only() -> None:
    b = csp.Broadcast[int]()
    s = b.subscribe()
    other = csp.Chan[int]()
    sel = csp.go(csp.select, s.recv, other.recv)
    await csp.gosched()
    await b.send(7)  # the parked select is the receiver waiting on s
    assert await sel == (0, 7)
    with pytest.raises(csp.ChannelError, match="send to receive-only channel"):
        await s.send(1)
    with pytest.raises(csp.ChannelError, match="close of receive-only channel"):
        s.close()


@pytest.mark.parametrize("cap, overflow, msg", [
    (-1, "block", "Broadcast: negative capacity -1"),
    (0, "drop_oldest", "Broadcast: overflow='drop_oldest' needs cap >= 1, got 0"),
    (1, "drop_newest", "Broadcast: overflow must be 'block' or 'drop_oldest', got 'drop_newest'"),
])
def test_bad_arguments_are_refused(cap: int, overflow: str, msg: str) -> None:
    with pytest.raises(ValueError) as ei:
        csp.Broadcast(cap, overflow)
    assert str(ei.value) == msg


@pytest.mark.parametrize("seed", range(6))
def test_cancellation_storm_each_value_reaches_every_subscriber_or_none(
        seed: int, loop_name: str) -> None:
    """Ledger: 30 senders each send one value while a random third of them are
    cancelled from outside; 3 subscribers (cap 0, 1, 2) receive at random speeds.
    Every value either reached all three, in the same order, or none; a send that
    returned reached them; every cancelled task ended cancelled or returned (took
    effect), none is lost."""
    rng = random.Random(seed)

    async def main() -> None:
        b = csp.Broadcast[int](cap=rng.choice([0, 1, 2]))
        subs = [b.subscribe() for _ in range(3)]
        received: list[list[int]] = [[], [], []]

        async def reader(k: int) -> None:
            async for v in subs[k]:
                received[k].append(v)
                for _ in range(rng.randrange(3)):
                    await csp.gosched()

        readers = [csp.go(reader, k) for k in range(3)]
        senders = [csp.go(b.send, i) for i in range(30)]
        victims = rng.sample(range(30), 10)
        for i in victims:
            for _ in range(rng.randrange(4)):
                await csp.gosched()
            senders[i].cancel()
        results = await asyncio.gather(*senders, return_exceptions=True)
        b.close()
        await asyncio.gather(*readers)
        sent = {i for i, r in enumerate(results) if r is None}
        cancelled = {i for i, r in enumerate(results)
                     if isinstance(r, asyncio.CancelledError)}
        assert sent | cancelled == set(range(30))
        assert cancelled <= set(victims)
        assert received[0] == received[1] == received[2]
        assert sorted(received[0]) == sorted(sent)

    csp.run(main, loop=loop_name)


@pytest.mark.parametrize("how", ["timeout", "cancel inside timeout"])
def test_send_cut_off_inside_asyncio_timeout_reaches_nobody(vrun: Any, how: str) -> None:
    """Invariant: a Broadcast.send waiting for room, cut off by ``asyncio.timeout``
    or cancelled from outside while inside one, reached no subscriber (none of them
    ever receives it), leaves no parked sender behind, and the cancellation from
    outside is delivered (the task ends cancelled, not timed out)."""
    async def main() -> tuple[str, list[int], list[int], str]:
        b = csp.Broadcast[int](cap=1)
        fast, slow = b.subscribe(), b.subscribe()
        await b.send(1)  # slow now holds 1: the next send must wait for it
        assert await fast.recv() == 1

        async def sender() -> str:
            try:
                async with asyncio.timeout(0.05 if how == "timeout" else 3600):
                    await b.send(2)
            except TimeoutError:
                return "timed out"
            return "sent"

        t = csp.go(sender)
        await csp.gosched()
        await csp.gosched()
        if how == "timeout":
            outcome = await t
        else:
            t.cancel()
            try:
                await t
                outcome = "returned"
            except asyncio.CancelledError:
                outcome = "cancelled"
        left = repr(b)
        b.close()
        return outcome, await drain(fast), await drain(slow), left

    outcome, fast, slow, left = vrun(main)
    assert outcome == ("timed out" if how == "timeout" else "cancelled")
    assert (fast, slow) == ([], [1])
    assert left.endswith("send_waiters=0>")
