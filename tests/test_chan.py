"""Channels: one test per Go rule C1..C23 (GO_SEMANTICS.md section 1) that applies.

Skipped as compile-time only: C5 (channel direction). Every docstring names the rule
and the Go test it mirrors. Tests run under ``csp.run`` on both loops (``@both``: the
csp pytest plugin's marker, with its goroutine leak check; or the ``run`` fixture), so a
test that blocks forever fails fast with ``DeadlockError`` instead of hanging.
Ordering is forced with channels and bounded ``gosched`` loops, never with sleeps.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from conftest import LOOPS

import csp
from csp._waiter import PENDING

Run = Callable[..., Any]

both = pytest.mark.csp(loop=tuple(LOOPS))
"""Run an async test as main under csp.run, once per loop (the csp pytest plugin)."""


async def spin(n: int = 10) -> None:
    """Let every runnable task run ``n`` times (enough for any pending wake-up)."""
    for _ in range(n):
        await csp.gosched()


def owner(node: Any) -> Any:
    """The operation a queue node belongs to: a waiter, or a select's waiter."""
    return getattr(node, "sel", node)


def live(q: Any) -> list[Any]:
    """The nodes of a channel queue; every one must belong to a pending operation."""
    nodes = list(q)
    assert all(owner(n).state is PENDING for n in nodes)
    return nodes


def assert_invariants(ch: csp.Chan[Any]) -> None:
    """The ``Invariants:`` of csp/_chan.py, checked from outside (and by the channel)."""
    ch._invariants()
    recvq, sendq = live(ch._recvq), live(ch._sendq)
    # at most one queue holds entries (a select in both queues of one channel is the
    # documented exception: it never pairs with itself)
    if recvq and sendq:
        assert {id(owner(e)) for e in recvq} == {id(owner(e)) for e in sendq}
    assert len(ch._buf) <= ch.cap
    if ch._buf:
        assert not recvq, "non-empty buffer with parked receivers"
    if len(ch._buf) < ch.cap:
        assert not sendq, "buffer with room and parked senders"
    if ch._closed:
        assert not recvq and not sendq, "closed channel with parked waiters"


async def expect_blocked(task: asyncio.Task[Any]) -> None:
    """``task`` stays blocked through many scheduling rounds; then cancel it and
    check that it ended by that cancellation (it was blocked, not finished)."""
    await spin(20)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# -- 1.1 creation, len/cap ---------------------------------------------------------


@both
async def test_c1_make_unbuffered_and_buffered() -> None:
    """C1 — chancap.go / makechan.go: Chan() is Chan(0), unbuffered; Chan(n) has cap n."""
    a, b, c = csp.Chan[int](), csp.Chan[int](0), csp.Chan[int](3)
    out: list[Any] = [a.cap, b.cap, c.cap]
    # unbuffered: a send with nobody receiving cannot complete
    out.append(await csp.select((a.send, 1), default=True))
    # buffered: exactly cap sends complete without a receiver
    for i in range(3):
        out.append(await csp.select((c.send, i), default=True))
    out.append(await csp.select((c.send, 9), default=True))
    assert out == [0, 0, 3, (-1, None), (0, None), (0, None), (0, None), (-1, None)]


def test_c1_bad_capacity() -> None:
    """C1 — makechan.go: a negative size panics ``makechan: size out of range``;
    a capacity that is not an int is a type error (Go: compile error)."""
    with pytest.raises(ValueError, match="makechan: size out of range"):
        csp.Chan(-1)
    for bad in (0.5, "1", None, 1.0, True):
        with pytest.raises(TypeError) as e:
            csp.Chan(bad)  # type: ignore[arg-type]
        assert str(e.value) == f"Chan: cap must be an integer, got {bad!r}"


def test_chan_capacity_has_index_semantics() -> None:
    """A capacity is any integer (``operator.index``): an object with ``__index__``."""

    class Two:
        def __index__(self) -> int:
            return 2

    ch = csp.Chan[int](Two())  # type: ignore[arg-type]
    assert ch.cap == 2 and type(ch.cap) is int


def test_c2_nil_and_identity() -> None:
    """C2 — chan_test.go: ``csp.nil`` is the zero channel; channels compare equal iff
    they are the same object (copies share it)."""
    a, b = csp.Chan[int](), csp.Chan[int]()
    alias = a
    assert a == alias and a is alias
    assert a != b
    assert isinstance(csp.nil, csp.Chan)
    assert csp.nil == csp.nil
    assert csp.nil != csp.Chan()
    assert {a, b, alias} == {a, b}  # hashable by identity
    assert (csp.nil.cap, len(csp.nil)) == (0, 0)


@both
async def test_c3_len_cap() -> None:
    """C3 — chan_test.go TestChan "Test len/cap", chancap.go: len counts buffered
    values only (parked senders excluded); after 2 sends + close on cap 3 and a full
    drain, len 0 and cap 3."""
    out = []
    c = csp.Chan[int](3)
    out.append((len(c), c.cap))
    await c.send(1)
    await c.send(2)
    out.append((len(c), c.cap))
    c.close()
    out.append((len(c), c.cap))
    assert [v async for v in c] == [1, 2]
    out.append((len(c), c.cap))
    # parked senders are not counted
    d = csp.Chan[int](1)
    await d.send(0)
    senders = [csp.go(d.send, i) for i in (1, 2)]
    await spin()
    out.append((len(d), d.cap))
    u = csp.Chan[int]()
    t = csp.go(u.send, 5)
    await spin()
    out.append((len(u), u.cap))
    assert [await d.recv() for _ in range(3)] == [0, 1, 2]
    assert await u.recv() == 5
    await asyncio.gather(*senders, t)
    assert out == [(0, 3), (2, 3), (2, 3), (0, 3), (1, 1), (0, 0)]


@both
async def test_c4_values_pass_by_reference_and_none_is_a_value() -> None:
    """C4 — test/chan/zerosize.go: any value (even None, the "zero value") can be
    sent; recv_ok tells a sent None from a closed channel; objects arrive as the same
    object (Python passes references where Go copies)."""
    ch = csp.Chan[Any](2)
    obj: list[int] = []
    await ch.send(None)
    await ch.send(obj)
    out: list[Any] = [await ch.recv_ok()]
    got = await ch.recv()
    out.append(got is obj)
    ch.close()
    out.append(await ch.recv_ok())
    assert out == [(None, True), True, (None, False)]


def test_c6_four_senders_four_receivers(run: Run) -> None:
    """C6 — chan_test.go TestChan "Send 1000 integers in 4 goroutines, ensure that we
    receive what we send": 4 senders x 4 receivers, for capacities 0, 1, 10; the
    received multiset is exactly the sent one."""
    L, P = 250, 4

    async def main(cap: int) -> Counter[int]:
        c = csp.Chan[int](cap)
        done = csp.Chan[Counter[int]]()

        async def sender() -> None:
            for i in range(L):
                await c.send(i)

        async def receiver() -> None:
            got: Counter[int] = Counter()
            for _ in range(L):
                got[await c.recv()] += 1  # type: ignore[index]
            await done.send(got)

        for _ in range(P):
            csp.go(sender)
            csp.go(receiver)
        total: Counter[int] = Counter()
        for _ in range(P):
            total += await done.recv()
        assert_invariants(c)
        assert len(c) == 0
        return total

    for cap in (0, 1, 10):
        assert run(main, cap) == Counter({i: P for i in range(L)})


# -- 1.2 send ------------------------------------------------------------------------


@both
async def test_c7_send_to_parked_receiver_bypasses_buffer() -> None:
    """C7 — chan.go send order (a): a send with a receiver parked hands the value over
    directly, even on a buffered channel (len stays 0); (b) buffer room: append;
    (c) full: park."""
    ch = csp.Chan[int](2)
    got = csp.Chan[int](1)

    async def receiver() -> None:
        await got.send(await ch.recv())  # type: ignore[arg-type]

    csp.go(receiver)
    await spin()
    assert_invariants(ch)
    out: list[Any] = [repr(ch)]
    await ch.send(7)  # (a) straight to the parked receiver
    out.append(len(ch))
    out.append(await got.recv())
    await ch.send(1)  # (b) buffer
    await ch.send(2)
    out.append(len(ch))
    t = csp.go(ch.send, 3)  # (c) park
    await spin()
    out.append(repr(ch))
    assert_invariants(ch)
    out.append([await ch.recv() for _ in range(3)])
    await t
    assert out == [
        "<csp.Chan cap=2 len=0 recv_waiters=1 send_waiters=0>",
        0,
        7,
        2,
        "<csp.Chan cap=2 len=2 recv_waiters=0 send_waiters=1>",
        [1, 2, 3],
    ]


@both
async def test_c8_unbuffered_send_is_a_rendezvous() -> None:
    """C8 — test/chan/fifo.go SynchFifo, select7.go: an unbuffered send does not
    return until a receiver has taken the value; when it returns, the value already
    belongs to the receiver."""
    ch = csp.Chan[int]()
    trace: list[str] = []

    async def sender() -> None:
        trace.append("send start")
        await ch.send(1)
        trace.append("send done")

    t = csp.go(sender)
    await spin()
    trace.append("main recv")  # the sender is still blocked
    trace.append(f"got {await ch.recv()}")
    await t
    # reverse roles: receiver parked first; send returns with the value delivered
    got: list[int] = []

    async def receiver() -> None:
        got.append(await ch.recv())  # type: ignore[arg-type]
        trace.append("receiver resumed")

    r = csp.go(receiver)
    await spin()
    trace.append("main send")
    await ch.send(2)
    trace.append(f"main sent, receiver has {got}")
    await r
    trace.append(f"receiver has {got}")
    assert trace == [
        "send start",
        "main recv",
        "got 1",
        "send done",
        "main send",
        "main sent, receiver has []",
        "receiver resumed",
        "receiver has [2]",
    ]


@both
async def test_c9_buffered_send_blocks_only_when_full() -> None:
    """C9 — chan_test.go TestChan "Ensure that send to full chan blocks", select3.go
    (free buffer space never blocks)."""
    ch = csp.Chan[int](3)
    for i in range(3):
        await ch.send(i)  # never blocks: would deadlock otherwise
    trace: list[str] = []

    async def sender() -> None:
        await ch.send(3)
        trace.append("sent")

    t = csp.go(sender)
    await spin()
    out: list[Any] = [list(trace), len(ch)]
    out.append(await ch.recv())  # frees a slot: the parked send completes
    await spin()
    out.append(list(trace))
    out.append([await ch.recv() for _ in range(3)])
    await t
    assert out == [[], 3, 0, ["sent"], [1, 2, 3]]


@both
async def test_c10_send_on_nil_blocks_forever() -> None:
    """C10 — test/chan/select3.go: send on a nil channel blocks forever (until
    cancelled)."""
    await expect_blocked(csp.go(csp.nil.send, 1))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.001):
            await csp.nil.send(2)


@both
async def test_c11_send_on_closed_channel_raises() -> None:
    """C11 — test/closedchan.go test1 (Send/Nbsend), select3.go: send on a closed
    channel panics ``send on closed channel``; the closed check precedes everything,
    including free buffer space."""
    out: list[Any] = []
    for cap in (0, 1, 5):
        ch = csp.Chan[int](cap)
        ch.close()
        with pytest.raises(csp.ClosedChannelError, match=r"^send on closed channel$"):
            await ch.send(1)
        with pytest.raises(csp.ClosedChannelError, match=r"^send on closed channel$"):
            await csp.select((ch.send, 1), default=True)  # Nbsend
        out.append((len(ch), await ch.recv_ok()))
    assert out == [(0, (None, False))] * 3


@both
async def test_c12_parked_sender_raises_when_closed() -> None:
    """C12 — (no Go test; Seen): a sender parked when the channel is closed wakes up
    with ``send on closed channel``; its value is delivered nowhere."""
    out: list[Any] = []
    for cap in (0, 1):
        ch = csp.Chan[str](cap)
        if cap:
            await ch.send("buffered")
        results: list[str] = []

        async def sender(v: str, results: list[str] = results, ch: csp.Chan[str] = ch) -> None:
            try:
                await ch.send(v)
                results.append(f"{v} sent")
            except csp.ClosedChannelError as e:
                results.append(f"{v}: {e}")

        ts = [csp.go(sender, v) for v in ("a", "b")]
        await spin()
        ch.close()
        await asyncio.gather(*ts)
        out.append(results)
        out.append([v async for v in ch])
    assert out == [
        ["a: send on closed channel", "b: send on closed channel"],
        [],
        ["a: send on closed channel", "b: send on closed channel"],
        ["buffered"],
    ]


# -- 1.3 receive -------------------------------------------------------------------


@both
async def test_c13_recv_decision_order() -> None:
    """C13 — chan.go recv order: (a) closed and empty: (None, False) at once;
    (b) parked sender on unbuffered: take its value; (c) buffer: head; (d) park."""
    out: list[Any] = []
    closed = csp.Chan[int](1)
    closed.close()
    out.append(await closed.recv_ok())  # (a)
    u = csp.Chan[int]()
    s = csp.go(u.send, 4)
    await spin()
    out.append(await u.recv_ok())  # (b)
    await s
    b = csp.Chan[int](2)
    await b.send(5)
    await b.send(6)
    out.append(await b.recv_ok())  # (c)
    out.append(await b.recv_ok())
    got: list[Any] = []

    async def receiver() -> None:
        got.append(await b.recv_ok())

    r = csp.go(receiver)  # (d)
    await spin()
    out.append(repr(b))
    await b.send(7)
    await r
    out.append(got)
    assert out == [
        (None, False),
        (4, True),
        (5, True),
        (6, True),
        "<csp.Chan cap=2 len=0 recv_waiters=1 send_waiters=0>",
        [(7, True)],
    ]


@both
async def test_c13b_buffered_recv_admits_head_sender_at_tail() -> None:
    """C13(b) — chan.go recv with a full buffer and parked senders: take the buffer
    head, move the longest-parked sender's value to the tail and wake that sender
    (global FIFO: values leave in the order their sends began)."""
    ch = csp.Chan[int](2)
    await ch.send(0)
    await ch.send(1)
    woken: list[int] = []

    async def sender(v: int) -> None:
        await ch.send(v)
        woken.append(v)

    ts = []
    for v in (2, 3, 4):
        ts.append(csp.go(sender, v))
        await spin()  # park in this order
    out: list[Any] = [repr(ch)]
    out.append(await ch.recv())
    # 2 was admitted at the tail: buffer is [1, 2], senders 3, 4 still parked
    out.append((list(ch._buf), len(live(ch._sendq))))
    assert_invariants(ch)
    await spin()
    out.append(list(woken))
    rest = [await ch.recv() for _ in range(4)]
    out.append(rest)
    await asyncio.gather(*ts)
    out.append(woken)
    assert_invariants(ch)
    assert out == [
        "<csp.Chan cap=2 len=2 recv_waiters=0 send_waiters=3>",
        0,
        ([1, 2], 2),
        [2],
        [1, 2, 3, 4],
        [2, 3, 4],
    ]


@both
async def test_c14_ok_is_false_only_when_closed_and_drained() -> None:
    """C14 — chan_test.go TestChan "Ensure that we receive 0 from closed chan",
    closedchan.go: ok is True for every sent value (even None or 0), False only once
    closed and drained, with the zero value None."""
    ch = csp.Chan[Any](3)
    for v in (0, None, False):
        await ch.send(v)
    ch.close()
    assert [await ch.recv_ok() for _ in range(5)] == [
        (0, True), (None, True), (False, True), (None, False), (None, False)]


@both
async def test_c15_close_keeps_buffered_values() -> None:
    """C15 — closedchan.go testasync1-4, TestNonblockRecvRace: values buffered before
    close come out in order with ok=True (also through a non-blocking receive and
    select), then (None, False). Seen: ``1 true 2 true 0 false``."""
    out: list[Any] = []
    ch = csp.Chan[int](4)
    for v in (1, 2, 3, 4):
        await ch.send(v)
    ch.close()
    out.append(await ch.recv())  # testasync1: recv
    out.append(await ch.recv_ok())  # testasync2: recv with ok
    out.append(await csp.select(ch.recv, default=True))  # testasync3: select
    out.append(await csp.select(ch.recv_ok, default=True))  # testasync4: nb recv ok
    out.append(await ch.recv_ok())
    out.append(await csp.select(ch.recv_ok, default=True))
    assert out == [1, (2, True), (0, 3), (0, (4, True)), (None, False), (0, (None, False))]


@both
async def test_c16_drained_closed_channel_never_blocks() -> None:
    """C16 — test/chan/select3.go "receiving from a closed channel never blocks":
    every receive on a closed, drained channel returns at once, indefinitely."""
    out: list[Any] = []
    for cap in (0, 2):
        ch = csp.Chan[int](cap)
        ch.close()
        out.append([await ch.recv() for _ in range(100)] == [None] * 100)
        out.append(await ch.recv_ok())
        out.append(await csp.select(ch.recv))
    assert out == [True, (None, False), (0, None)] * 2


@both
async def test_c17_recv_on_nil_blocks_forever() -> None:
    """C17 — test/chan/select3.go: receive from a nil channel blocks forever (until
    cancelled), for recv, recv_ok and async for."""
    await expect_blocked(csp.go(csp.nil.recv))
    await expect_blocked(csp.go(csp.nil.recv_ok))

    async def ranger() -> None:
        async for _ in csp.nil:
            raise AssertionError("nil yielded a value")

    await expect_blocked(csp.go(ranger))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.001):
            await csp.nil.recv()


@both
async def test_c18_fifo_order_every_capacity() -> None:
    """C18 — chan_test.go TestChan "Send 100 integers, ensure that we receive them
    non-corrupted in FIFO order" for every capacity 0..N; test/chan/fifo.go
    AsynchFifo."""
    N = 20
    bad = []
    for cap in range(N):
        c = csp.Chan[int](cap)

        async def producer(c: csp.Chan[int] = c) -> None:
            for i in range(100):
                await c.send(i)

        csp.go(producer)
        got = [await c.recv() for _ in range(100)]
        if got != list(range(100)):
            bad.append(cap)
        # AsynchFifo: fill the buffer from main, then drain
        for i in range(cap):
            await c.send(i)
        if [await c.recv() for _ in range(cap)] != list(range(cap)):
            bad.append(cap)
    assert bad == []


# -- 1.4 close -----------------------------------------------------------------------


@both
async def test_c19_close_wakes_every_waiter() -> None:
    """C19 — chan_test.go TestChan "Ensure that close unblocks receive": close wakes
    every parked receiver ((None, False) / None) and every parked sender
    (ClosedChannelError). Seen: three blocked receivers all got ``0 false``."""
    out: list[Any] = []
    ch = csp.Chan[int]()
    results: list[Any] = []

    async def recv_ok() -> None:
        results.append(await ch.recv_ok())

    async def recv() -> None:
        results.append(await ch.recv())

    ts = [csp.go(recv_ok) for _ in range(3)] + [csp.go(recv)]
    await spin()
    out.append(repr(ch))
    ch.close()
    out.append(repr(ch))
    assert_invariants(ch)
    await asyncio.gather(*ts)
    out.append(results)

    sc = csp.Chan[int](1)
    await sc.send(0)
    errors: list[str] = []

    async def send(v: int) -> None:
        try:
            await sc.send(v)
        except csp.ClosedChannelError as e:
            errors.append(str(e))

    ts = [csp.go(send, v) for v in range(3)]
    await spin()
    out.append(repr(sc))
    sc.close()
    await asyncio.gather(*ts)
    out.append(errors)
    out.append(repr(sc))
    assert out == [
        "<csp.Chan cap=0 len=0 recv_waiters=4 send_waiters=0>",
        "<csp.Chan cap=0 len=0 recv_waiters=0 send_waiters=0 closed>",
        [(None, False)] * 3 + [None],
        "<csp.Chan cap=1 len=1 recv_waiters=0 send_waiters=3>",
        ["send on closed channel"] * 3,
        "<csp.Chan cap=1 len=1 recv_waiters=0 send_waiters=0 closed>",
    ]


@both
async def test_c20_close_nil_and_close_twice() -> None:
    """C20 — test/closedchan.go main: ``close of nil channel`` (ChannelError) and
    ``close of closed channel`` (ClosedChannelError); both recoverable."""
    with pytest.raises(csp.ChannelError, match=r"^close of nil channel$") as ei:
        csp.nil.close()
    assert type(ei.value) is csp.ChannelError
    ch = csp.Chan[int]()
    ch.close()
    with pytest.raises(csp.ClosedChannelError, match=r"^close of closed channel$"):
        ch.close()
    assert issubclass(csp.ClosedChannelError, csp.ChannelError)
    assert issubclass(csp.ChannelError, RuntimeError)
    c = csp.Chan[int]()
    r = csp.go(c.recv_ok)
    await spin()
    c.close()
    with pytest.raises(csp.ClosedChannelError, match=r"^close of closed channel$"):
        c.close()
    assert [await r, await c.recv_ok()] == [(None, False), (None, False)]


def test_c21_close_is_final_and_unclosed_channels_are_collected(run: Run) -> None:
    """C21 — Go spec: close is a one-shot broadcast with no reopen; closing is
    optional: an unreferenced channel, closed or not, is garbage collected."""

    async def main() -> list[Any]:
        ch = csp.Chan[int](1)
        ch.close()
        out: list[Any] = []
        for _ in range(3):
            with pytest.raises(csp.ClosedChannelError):
                await ch.send(1)
            out.append(await ch.recv_ok())
        return out

    assert run(main) == [(None, False)] * 3

    async def make() -> weakref.ref[csp.Chan[int]]:
        ch = csp.Chan[int](3)
        await ch.send(1)
        return weakref.ref(ch)

    ref = run(make)
    gc.collect()
    assert ref() is None


@both
async def test_c22_async_for_ranges_until_closed_and_drained() -> None:
    """C22 — chan_test.go TestMultiConsumer: ``async for`` is ``for v := range ch``;
    23 ranging workers see every value exactly once and all end on close."""
    NW, NV = 23, 500
    q = csp.Chan[int](10)
    r = csp.Chan[Counter[int]](NW)

    async def worker() -> None:
        seen: Counter[int] = Counter()
        async for v in q:
            seen[v] += 1
        await r.send(seen)

    for _ in range(NW):
        csp.go(worker)
    for i in range(NV):
        await q.send(i)
    q.close()
    total: Counter[int] = Counter()
    for _ in range(NW):
        total += await r.recv()  # type: ignore[operator]
    await spin()
    n = csp.num_goroutine()
    assert total == Counter(range(NV))
    assert n == 1  # every worker's range loop ended


@both
async def test_c22_async_for_sees_none_values_and_buffered_after_close() -> None:
    """C22 — range loops on ``v, ok := <-ch; if !ok { break }``: a sent None does not
    end the loop; values buffered before close are all seen."""
    ch = csp.Chan[Any](4)
    for v in (1, None, 3):
        await ch.send(v)
    ch.close()
    assert [v async for v in ch] == [1, None, 3]


# -- 1.6 order among blocked goroutines -------------------------------------------


def test_c23_blocked_receivers_served_fifo(run: Run) -> None:
    """C23 — test/chan/fifo.go SynchFifo; Seen: receivers parked 0..4 received
    0,10,20,30,40 respectively (longest-parked receiver gets the next value)."""

    async def main(cap: int) -> list[tuple[int, int]]:
        ch = csp.Chan[int](cap)
        got: list[tuple[int, int]] = []

        async def receiver(k: int) -> None:
            got.append((k, await ch.recv()))  # type: ignore[arg-type]

        ts = []
        for k in range(5):
            ts.append(csp.go(receiver, k))
            await spin()  # park in order 0..4
        for k in range(5):
            await ch.send(10 * k)
        await asyncio.gather(*ts)
        return sorted(got)

    for cap in (0, 3):
        assert run(main, cap) == [(k, 10 * k) for k in range(5)]


def test_c23_blocked_senders_served_fifo(run: Run) -> None:
    """C23 — TestChan FIFO; Seen: senders parked on a full cap-1 channel were drained
    in parking order (the longest-parked sender's value is admitted first)."""

    async def main(cap: int) -> list[int]:
        ch = csp.Chan[int](cap)
        for _ in range(cap):
            await ch.send(-1)
        ts = []
        for k in range(5):
            ts.append(csp.go(ch.send, k))
            await spin()  # park in order 0..4
        got = [await ch.recv() for _ in range(cap + 5)]
        await asyncio.gather(*ts)
        return got

    for cap in (0, 1, 2):
        assert run(main, cap) == [-1] * cap + [0, 1, 2, 3, 4]


@both
async def test_c23_fifo_skips_selects_that_committed_elsewhere() -> None:
    """C23 — select6.go (Issue 2075), TestSelectDuplicateChannel: a queued select that
    already committed on another channel is skipped; the next live waiter in FIFO
    order gets the value, and repr counts live waiters only."""
    a, b = csp.Chan[int](), csp.Chan[int]()
    got: list[Any] = []

    async def selector() -> None:
        got.append(("sel", await csp.select(a.recv, b.recv)))

    async def plain() -> None:
        got.append(("plain", await a.recv()))

    s = csp.go(selector)
    await spin()
    p = csp.go(plain)
    await spin()
    out: list[Any] = [repr(a)]
    await b.send(1)  # the select commits on b; its entry in a's queue goes stale
    await s
    out.append(repr(a))
    await a.send(2)  # must go to `plain`, not to the stale select entry
    await p
    out.append(got)
    assert_invariants(a)
    assert_invariants(b)
    assert out == [
        "<csp.Chan cap=0 len=0 recv_waiters=2 send_waiters=0>",
        "<csp.Chan cap=0 len=0 recv_waiters=1 send_waiters=0>",
        [("sel", (1, 1)), ("plain", 2)],
    ]


@both
async def test_c23_cancelled_waiter_is_skipped() -> None:
    """C23 — chanlinear.go (parked waiter removal): a cancelled receiver is out of the
    queue; the next one in FIFO order gets the value, nothing is lost."""
    ch = csp.Chan[int]()
    got: list[tuple[int, Any]] = []

    async def receiver(k: int) -> None:
        got.append((k, await ch.recv()))

    ts = []
    for k in range(3):
        ts.append(csp.go(receiver, k))
        await spin()
    ts[0].cancel()
    await spin()
    out: list[Any] = [repr(ch)]
    await ch.send(10)
    await ch.send(11)
    await asyncio.gather(*ts[1:])
    out.append(got)
    out.append(ts[0].cancelled())
    assert out == [
        "<csp.Chan cap=0 len=0 recv_waiters=2 send_waiters=0>",
        [(1, 10), (2, 11)],
        True,
    ]


@pytest.mark.asyncio
async def test_channels_work_in_plain_asyncio_tasks() -> None:
    """C6 — channels are usable by plain asyncio tasks (no csp.run): ping-pong with
    a rendezvous, then close ends the partner's range loop."""
    ping, pong = csp.Chan[int](), csp.Chan[int]()
    trace: list[int] = []

    async def ponger() -> None:
        async for v in ping:
            await pong.send(v + 1)

    t = asyncio.create_task(ponger())
    for i in range(0, 10, 2):
        await ping.send(i)
        trace.append(await pong.recv())  # type: ignore[arg-type]
    ping.close()
    await t
    assert trace == [1, 3, 5, 7, 9]


# -- direction views (API.md typing row; Go: <-chan T, chan<- T) ----------------------

DIRECTION_SNIPPET = """
import csp

async def consume(c: csp.RecvChan[int]) -> int:
    v = await c.recv()
    v2, ok = await c.recv_ok()
    n = c.recv_nowait()
    async for x in c:
        pass
    await c.send(1)  # E: "RecvChan[int]" has no attribute "send"
    c.close()  # E: "RecvChan[int]" has no attribute "close"
    return (v or 0) + len(c) + c.cap

async def produce(c: csp.SendChan[int]) -> None:
    await c.send(1)
    c.send_nowait(2)
    c.close()
    await c.recv()  # E: "SendChan[int]" has no attribute "recv"
    await c.send("x")  # E: Argument 1 to "send" of "SendChan" has incompatible type "str"

async def main() -> None:
    ch = csp.Chan[int](1)
    await consume(ch)
    await produce(ch)
    timer: csp.RecvChan[float] = csp.after(1.0)
    await consume(csp.Chan[str]())  # E: Argument 1 to "consume" has incompatible type
    wide: csp.RecvChan[object] = ch
    narrow: csp.SendChan[bool] = ch
    wrong: csp.SendChan[object] = ch  # E: Incompatible types in assignment
"""


def test_direction_views_type_check(tmp_path: Any) -> None:
    """A Chan[T] is assignable to RecvChan[T] (covariant) and SendChan[T]
    (contravariant); a RecvChan has no send/close, a SendChan no receive."""
    from typecheck import check_snippet

    check_snippet(DIRECTION_SNIPPET, tmp_path, "chan_typing")


@pytest.mark.asyncio
async def test_chan_is_both_views_at_runtime() -> None:
    """The views are runtime-checkable Protocols: a Chan is both; a timer's channel
    only receives."""
    ch = csp.Chan[int]()
    assert isinstance(ch, csp.RecvChan) and isinstance(ch, csp.SendChan)
    t = csp.after(1)
    assert isinstance(t, csp.RecvChan)


# -- non-blocking operations (API.md: Non-blocking operations) ---------------------------


@pytest.mark.asyncio
async def test_send_nowait_completes_or_raises_would_block() -> None:
    """send_nowait hands the value to a parked receiver (rendezvous) or puts it in a
    buffer with room; otherwise it raises WouldBlock and changes nothing."""
    u = csp.Chan[int]()
    with pytest.raises(csp.WouldBlock):
        u.send_nowait(1)  # unbuffered, nobody receiving
    assert len(u) == 0 and len(u._sendq) == 0
    t = asyncio.create_task(u.recv())
    await spin()
    assert u.send_nowait(2) is None  # a parked receiver takes it
    assert await t == 2
    b = csp.Chan[int](2)
    b.send_nowait(3)
    b.send_nowait(4)
    with pytest.raises(csp.WouldBlock):
        b.send_nowait(5)  # full
    assert [await b.recv(), await b.recv()] == [3, 4]
    assert_invariants(b)


@pytest.mark.asyncio
async def test_recv_nowait_and_recv_ok_nowait() -> None:
    """The receive twins take a buffered value, or a parked sender's value (its send
    completes), or report closed-and-drained as None / (None, False); else WouldBlock."""
    ch = csp.Chan[int](1)
    with pytest.raises(csp.WouldBlock):
        ch.recv_nowait()
    with pytest.raises(csp.WouldBlock):
        ch.recv_ok_nowait()
    ch.send_nowait(1)
    assert ch.recv_nowait() == 1
    u = csp.Chan[int]()
    sender = asyncio.create_task(u.send(7))
    await spin()
    assert u.recv_ok_nowait() == (7, True)
    await sender  # the send completed
    ch.send_nowait(8)
    ch.close()
    assert ch.recv_ok_nowait() == (8, True)  # buffered values first
    assert ch.recv_nowait() is None
    assert ch.recv_ok_nowait() == (None, False)  # closed and drained, forever
    assert csp.nil.recv_ok_nowait.__self__ is csp.nil
    with pytest.raises(csp.WouldBlock):
        csp.nil.recv_nowait()
    with pytest.raises(csp.WouldBlock):
        csp.nil.send_nowait(1)


def test_send_nowait_on_a_closed_channel_raises_closed() -> None:
    """A closed channel is not "would block": send_nowait raises ClosedChannelError."""
    ch = csp.Chan[int](1)
    ch.close()
    with pytest.raises(csp.ClosedChannelError, match="send on closed channel"):
        ch.send_nowait(1)


def test_nowait_calls_work_from_loop_callbacks(loop_name: str) -> None:
    """The non-blocking calls are plain calls: a loop callback (or a signal handler
    run by the loop) can feed and drain channels without a task; they never raise an
    owed cancellation and never yield."""

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        ch = csp.Chan[int](4)
        done = csp.Chan[None]()
        out: list[Any] = []

        def feed(i: int) -> None:
            try:
                ch.send_nowait(i)
            except csp.WouldBlock:
                out.append(("full", i))
            if i == 5:
                done.close()

        for i in range(6):
            loop.call_soon(feed, i)
        await done.recv()
        out.append(sorted(ch.recv_nowait() for _ in range(len(ch))))  # type: ignore[type-var]
        return out

    assert csp.run(main, loop=loop_name) == [("full", 4), ("full", 5), [0, 1, 2, 3]]


@pytest.mark.asyncio
async def test_nowait_send_to_a_parked_select_commits_one_case() -> None:
    """send_nowait completing a parked select commits exactly that case; the select's
    other cases leave their queues."""
    a, b = csp.Chan[int](), csp.Chan[int]()
    t = asyncio.create_task(csp.select(a.recv, b.recv))
    await spin()
    assert len(a._recvq) == len(b._recvq) == 1
    b.send_nowait(9)
    assert await t == (1, 9)
    assert len(a._recvq) == 0 and len(b._recvq) == 0
    with pytest.raises(csp.WouldBlock):
        a.send_nowait(1)  # the select's losing case is gone


# -- memory: a finished operation holds nothing (issue 13 item 6) ----------------------


class Payload:
    """A weak-referenceable value to send: its weakref dies when nothing holds it."""


@pytest.mark.parametrize("how", ["timeout", "cancel"])
@both
async def test_send_cut_off_leaves_no_entry_and_lets_its_value_go(gc_off: None, how: str) -> None:
    """A send withdrawn by a timeout or a cancellation leaves its channel's queue at
    once and lets go of its value at once (the collector is off: no cycle, no sweep
    holds it), while the channel stays usable."""
    ch = csp.Chan[Payload]()
    seen: list[Any] = []
    for _ in range(3):
        p = Payload()
        ref = weakref.ref(p)
        if how == "timeout":
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.001):
                    await ch.send(p)
        else:
            t = csp.go(ch.send, p)
            await spin(3)
            assert len(ch._sendq) == 1
            t.cancel()
            await spin(3)
            assert t.cancelled()
            del t
        del p
        seen.append((ref() is None, len(ch._sendq), repr(ch)))
        assert_invariants(ch)
    csp.go(ch.send, Payload())
    seen.append(type(await ch.recv()).__name__)
    assert seen == [
        (True, 0, "<csp.Chan cap=0 len=0 recv_waiters=0 send_waiters=0>")] * 3 + ["Payload"]


def test_send_skips_a_receiver_whose_loop_was_closed(
        run: Run, park_dead: Callable[..., Any]) -> None:
    """Item 10: a receiver left parked by a loop closed by hand can never run: a send
    (or send_nowait) skips it (withdrawn), so the value reaches a live receiver, the
    buffer, or parks; before, completing the dead one lost the value (and raised
    "Event loop is closed")."""
    unbuf, buf = csp.Chan[int](), csp.Chan[int](1)
    for ch in (unbuf, buf, unbuf):
        park_dead(ch.recv)
    park_dead(unbuf.recv, go=True)
    assert len(unbuf._recvq) == 3 and len(buf._recvq) == 1

    async def main() -> list[Any]:
        got: list[Any] = []

        async def receiver() -> None:
            got.append(await unbuf.recv())

        csp.go(receiver)
        await spin(3)
        await unbuf.send(1)  # three dead receivers first, then the live one
        await spin(3)
        buf.send_nowait(2)  # the dead receiver is skipped: into the buffer
        with pytest.raises(csp.WouldBlock):
            unbuf.send_nowait(3)  # nobody live is waiting
        got += [len(unbuf._recvq), len(buf._recvq), len(buf), await buf.recv()]
        assert_invariants(unbuf)
        assert_invariants(buf)
        return got

    assert run(main) == [1, 0, 0, 1, 2]


def test_recv_and_close_skip_a_sender_whose_loop_was_closed(
        run: Run, park_dead: Callable[..., Any]) -> None:
    """Item 10: a sender left parked by a closed loop is withdrawn when a receive
    reaches it (its send did not take effect: the receive goes on to the next sender,
    or parks), and close() skips it without touching its closed loop."""
    unbuf, buf, closing = csp.Chan[int](), csp.Chan[int](1), csp.Chan[int]()
    park_dead(unbuf.send, 1)
    park_dead(closing.send, 9)
    buf.send_nowait(10)
    park_dead(buf.send, 11)  # the buffer is full: parked behind it

    async def main() -> list[Any]:
        csp.go(unbuf.send, 2)
        await spin(3)
        got: list[Any] = [await unbuf.recv()]  # 1's sender is dead: 2
        got.append(await buf.recv())  # 10; the dead sender's 11 does not refill it
        got += [len(buf), len(buf._sendq)]
        with pytest.raises(csp.WouldBlock):
            unbuf.recv_nowait()
        closing.close()  # (before: "Event loop is closed")
        got.append(await closing.recv_ok())
        for ch in (unbuf, buf, closing):
            assert_invariants(ch)
        return got

    assert run(main) == [2, 10, 0, 0, (None, False)]


# -- overflow policies (API.md, Channel family) --------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("policy, kept", [("drop_newest", [0, 1, 2]),
                                          ("drop_oldest", [7, 8, 9])])
async def test_overflow_policy_keeps_exact_buffer_contents(policy: str,
                                                           kept: list[int]) -> None:
    """Ten sends into a cap-3 channel complete at once: ``drop_newest`` keeps the
    first three (core.async's dropping buffer), ``drop_oldest`` the last three
    (sliding buffer); ``dropped`` counts the other seven; FIFO among the kept."""
    ch = csp.Chan[int](3, overflow=policy)
    for i in range(10):
        await ch.send(i)
    ch.send_nowait(10)
    assert ch.dropped == 8 and len(ch) == 3 and ch.overflow == policy
    want = kept if policy == "drop_newest" else [8, 9, 10]
    assert [ch.recv_nowait() for _ in range(3)] == want
    assert repr(ch) == (f"<csp.Chan cap=3 len=0 recv_waiters=0 send_waiters=0 "
                        f"overflow={policy} dropped=8>")
    ch._invariants()


@pytest.mark.asyncio
@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest"])
async def test_overflow_channel_behaves_as_a_channel_otherwise(policy: str) -> None:
    """Receivers parked on an empty dropping channel get values in order (nothing is
    dropped while there is room or a receiver); a send case on a full one is ready in
    select; close: buffered values are drained, then (None, False), sends raise."""
    ch = csp.Chan[int](2, overflow=policy)
    r = csp.go(ch.recv)
    await csp.gosched()
    await ch.send(1)
    assert await r == 1 and ch.dropped == 0
    await ch.send(2)
    await ch.send(3)
    assert await csp.select((ch.send, 4), csp.Chan[int]().recv) == (0, None)
    assert ch.dropped == 1
    ch.close()
    got = [await ch.recv_ok() for _ in range(3)]
    assert got[2] == (None, False)
    assert [v for v, _ in got[:2]] == ([2, 3] if policy == "drop_newest" else [3, 4])
    with pytest.raises(csp.ClosedChannelError, match="send on closed channel"):
        await ch.send(5)


def test_plain_channel_reports_block_and_no_drops() -> None:
    ch = csp.Chan[int](1)
    assert (ch.overflow, ch.dropped) == ("block", 0)
    assert repr(ch) == "<csp.Chan cap=1 len=0 recv_waiters=0 send_waiters=0>"


@pytest.mark.parametrize("cap, policy, msg", [
    (0, "drop_oldest", "Chan: overflow='drop_oldest' needs cap >= 1, got 0"),
    (1, "drop", "Chan: overflow must be 'block', 'drop_newest' or 'drop_oldest', got 'drop'"),
    (1, None, "Chan: overflow must be 'block', 'drop_newest' or 'drop_oldest', got None"),
])
def test_overflow_refuses_bad_policies(cap: int, policy: Any, msg: str) -> None:
    with pytest.raises(ValueError) as ei:
        csp.Chan(cap, overflow=policy)
    assert str(ei.value) == msg


# -- an operation is a coroutine (compiled: csp._speedups.ChanOp; pure: a coroutine) --
# ch.recv() / recv_ok() / send(v) / __anext__() return an object that behaves as a
# coroutine would: nothing happens until it is first resumed, it is awaited once, and
# asyncio, anyio and csp.go take it. CI runs these in both modes.


def _collect_unawaited(make: Callable[[], Any]) -> None:
    with pytest.warns(RuntimeWarning, match="was never awaited"):
        op = make()
        del op
        gc.collect()


def test_an_operation_not_awaited_has_no_effect_and_warns() -> None:
    ch = csp.Chan[int](1)
    _collect_unawaited(lambda: ch.send(1))
    assert len(ch) == 0
    ch.send_nowait(2)
    _collect_unawaited(ch.recv)
    _collect_unawaited(ch.recv_ok)
    _collect_unawaited(ch.__anext__)
    assert len(ch) == 1 and ch.recv_nowait() == 2


def test_an_operation_closed_or_thrown_into_before_it_starts_has_no_effect() -> None:
    ch = csp.Chan[int](1)
    op = ch.send(1)
    op.close()
    assert len(ch) == 0
    op = ch.send(1)
    with pytest.raises(KeyError, match="k"):
        op.throw(KeyError("k"))
    assert len(ch) == 0
    with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
        op.send(None)


@both
async def test_an_operation_is_a_coroutine_to_asyncio_and_csp_go() -> None:
    ch = csp.Chan[int]()
    op = ch.recv()
    assert asyncio.iscoroutine(op)
    op.close()
    t = asyncio.create_task(ch.send(5))
    assert await ch.recv() == 5
    await t
    got = csp.Chan[int](1)
    done = csp.go(ch.recv)  # a bound operation is a coroutine function to csp.go
    csp.go(ch.send, 7)
    assert await done == 7
    wg = csp.WaitGroup()
    wg.go(ch.send, 8)
    wg.go(got.send, await ch.recv())
    await wg.wait()
    assert got.recv_nowait() == 8


@both
async def test_an_operation_is_awaited_once() -> None:
    ch = csp.Chan[int](1)
    op = ch.send(1)
    await op
    with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
        await op
    assert ch.recv_nowait() == 1


@both
async def test_outcomes_that_a_stop_iteration_could_mangle_pass_intact() -> None:
    """A tuple or an exception as the value received (a StopIteration made from it the
    naive way would unpack the tuple or chain the exception), ready or after a park,
    through await and through the coroutine protocol."""
    err = KeyError("v")
    for v in [(1, 2), (), err, None, (None,)]:
        ch = csp.Chan[Any](1)
        await ch.send(v)
        assert await ch.recv() is v
        ch.send_nowait(v)
        op = ch.recv_ok()
        with pytest.raises(StopIteration) as stop:
            op.send(None)
        assert stop.value.value == (v, True) and stop.value.value[0] is v
        u = csp.Chan[Any]()
        t = csp.go(u.recv)
        await csp.gosched()
        await u.send(v)
        assert await t is v


@both
async def test_a_parked_operation_dropped_or_closed_is_withdrawn() -> None:
    ch = csp.Chan[int]()
    for how in ("close", "drop"):
        op = ch.recv()
        w = op.send(None)  # parks: yields its waiter (what a task would wait on)
        assert w.state is PENDING and len(list(ch._recvq)) == 1
        if how == "close":
            op.close()
        else:
            del op
            gc.collect()
        assert list(ch._recvq) == [] and w.state is not PENDING
        assert_invariants(ch)
    ch.close()


@both
async def test_a_parked_operation_finishes_with_its_outcome_when_resumed() -> None:
    ch = csp.Chan[int]()
    for kind in ("recv", "recv_ok", "anext", "send"):
        op = {"recv": ch.recv, "recv_ok": ch.recv_ok, "anext": ch.__anext__,
              "send": lambda: ch.send(3)}[kind]()
        w = op.send(None)
        if kind == "send":
            assert ch.recv_nowait() == 3
        else:
            ch.send_nowait(4)
        assert w.state is not PENDING
        with pytest.raises(StopIteration) as stop:
            op.send(None)
        assert stop.value.value == {"recv": 4, "recv_ok": (4, True), "anext": 4,
                                     "send": None}[kind]


def test_try_recv_refills_the_buffer_it_took_from() -> None:
    """A full buffer's receive moves the parked sender's value into the buffer it took
    from, even if completing that sender replaces or removes the channel's buffer (a
    review finding: the compiled twin re-read the field after running that code)."""
    from collections import deque

    class Node:
        __slots__ = ("q", "prev", "next", "value", "action")

        def __init__(self, value: Any, action: Callable[[], None]) -> None:
            self.value, self.action = value, action

        def complete(self, value: Any, ok: bool = True) -> bool:
            self.action()
            return True

    ch = csp.Chan[str](1)
    ch.send_nowait("a")
    old = ch._buf

    def swap() -> None:
        ch._buf = deque()

    ch._sendq.push(Node("b", swap))
    assert ch._try_recv() == "a"
    assert list(old) == ["b"] and list(ch._buf) == []

    ch = csp.Chan[str](1)
    ch.send_nowait("a")

    def drop() -> None:
        del ch._buf

    ch._sendq.push(Node("b", drop))
    assert ch._try_recv() == "a"


# -- an operation under strange use (review findings on the compiled twin; both modes) --


@both
async def test_an_operation_closed_from_inside_its_own_step_is_refused() -> None:
    """Code run inside an operation's step (a ``_try_recv`` override) that closes that
    same operation gets ValueError, as a running coroutine's close does; the operation
    goes on."""
    cur: list[Any] = []
    seen: list[str] = []

    class Spy(csp.Chan[int]):  # type: ignore[misc]  # (final to users)
        __slots__ = ()

        def _try_recv(self) -> Any:
            if cur:
                try:
                    cur[0].close()
                    seen.append("closed")
                except ValueError as e:
                    seen.append(str(e))
            return super()._try_recv()

    ch = Spy(1)
    ch.send_nowait(1)
    cur.append(ch.recv())
    assert await cur[0] == 1
    assert seen == ["coroutine already executing"]


@both
async def test_a_waiter_completed_or_withdrawn_by_push_itself() -> None:
    """A queue whose ``push`` completes (or withdraws) the waiter at once: the
    operation returns that outcome (or raises CancelledError) without yielding."""
    from csp._waitq import WaitQ

    class Completes(WaitQ):
        __slots__ = ()

        def push(self, n: Any) -> None:
            n.complete(["X"])

    class Withdraws(WaitQ):
        __slots__ = ()

        def push(self, n: Any) -> None:
            n.withdraw("msg")

    ch = csp.Chan[Any]()
    ch._recvq = Completes()
    assert await ch.recv() == ["X"] and await ch.recv_ok() == (["X"], True)
    ch._sendq = Completes()
    assert await ch.send("v") is None
    ch._recvq = Withdraws()
    with pytest.raises(asyncio.CancelledError, match="msg"):
        await ch.recv()


@both
async def test_a_parked_operation_awaited_again_elsewhere_is_refused() -> None:
    ch = csp.Chan[str]()
    op = ch.recv()
    first = asyncio.ensure_future(op)
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="being awaited already"):
        await op
    ch.send_nowait("V")  # still the first awaiter's, parked
    assert await first == "V"


@both
async def test_throw_with_bad_arguments_into_a_parked_operation_withdraws_it() -> None:
    """throw(1) raises TypeError at the park, as in a coroutine, whose frame then ends:
    the receive is withdrawn, so a later send finds no receiver."""
    ch = csp.Chan[str]()
    op = ch.recv_ok()
    op.send(None)
    with pytest.raises(TypeError):
        op.throw(1)
    assert ch._waiting() == (0, 0)
    with pytest.raises(csp.WouldBlock):
        ch.send_nowait("v")


@both
async def test_throw_stop_iteration_into_a_parked_operation_is_a_runtime_error() -> None:
    """PEP 479: a StopIteration raised at a coroutine's await becomes RuntimeError; the
    operation took no effect."""
    for make in ("recv", "recv_ok", "send"):
        ch = csp.Chan[str]()
        op = ch.send("v") if make == "send" else getattr(ch, make)()
        op.send(None)
        with pytest.raises(RuntimeError, match="generator raised StopIteration") as info:
            op.throw(StopIteration("x"))
        assert isinstance(info.value.__cause__, StopIteration)
        assert ch._waiting() == (0, 0)


@both
async def test_a_channel_class_patched_after_its_first_operation_is_seen() -> None:
    class Sub(csp.Chan[Any]):  # type: ignore[misc]
        pass

    ch = Sub(1)
    await ch.send(1)
    assert await ch.recv() == 1
    Sub._try_recv = lambda self: "patched"  # type: ignore[method-assign]
    try:
        assert await ch.recv() == "patched"
        assert await csp.select(ch.recv) == (0, "patched")
    finally:
        del Sub._try_recv


def test_first_resume_with_a_value_is_refused_and_has_no_effect() -> None:
    import inspect

    ch = csp.Chan[str](1)
    op = ch.send("v")
    with pytest.raises(TypeError, match="can't send non-None value"):
        op.send(1)
    assert len(ch) == 0
    op.close()
    op = ch.recv()
    op.send(None)  # parks (nothing buffered)
    assert inspect.getcoroutinestate(op) == inspect.CORO_SUSPENDED
    op.close()
    assert inspect.getcoroutinestate(op) == inspect.CORO_CLOSED
