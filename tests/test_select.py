"""select: Go rules S1..S13 (GO_SEMANTICS.md section 2) that apply.

Skipped: S1's ``break``/fallthrough and S2's evaluation order of operands (Python
evaluates call arguments left to right before ``select`` runs; nothing to port).
Statistical tests use a seeded global ``random`` (csp draws from it), restored after
the test, so they are reproducible; each states its bound and shows that a biased
chooser would fail it.
"""

from __future__ import annotations

import asyncio
import gc
import random
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import LOOPS

import csp

Run = Callable[..., Any]

both = pytest.mark.csp(loop=tuple(LOOPS))
"""Run an async test as main under csp.run, once per loop (the csp pytest plugin)."""

# chi-square critical values at p = 0.001, by degrees of freedom
CHI2_001 = {1: 10.828, 2: 13.816, 3: 16.266, 4: 18.467}


def chi2(counts: list[int]) -> float:
    """Pearson's statistic for ``counts`` against a uniform distribution."""
    n = sum(counts)
    e = n / len(counts)
    return sum((c - e) ** 2 / e for c in counts)


async def spin(n: int = 10) -> None:
    for _ in range(n):
        await csp.gosched()


@pytest.fixture
def seeded() -> Iterator[None]:
    state = random.getstate()
    random.seed(20240601)
    yield
    random.setstate(state)


# -- S1, S12: shape of cases; one case is the plain operation ---------------------


@both
async def test_s1_s12_case_kinds_and_results() -> None:
    """S1, S12 — select7.go (recv1/2/3 x send1/2/3 interchangeable): ch.recv gives the
    value, ch.recv_ok gives (value, ok), (ch.send, x) gives None; a single case without
    default is the plain operation, with default the non-blocking one."""
    ch = csp.Chan[int](1)
    out: list[Any] = []
    out.append(await csp.select((ch.send, 5)))
    out.append(await csp.select(ch.recv))
    await ch.send(6)
    out.append(await csp.select(ch.recv_ok))
    out.append(await csp.select(ch.recv, default=True))  # empty: default
    await ch.send(7)
    out.append(await csp.select((ch.send, 8), default=True))  # full: default
    out.append(await ch.recv())
    # a single blocking case parks like the plain op and is served by a partner
    u = csp.Chan[int]()
    t = csp.go(csp.select, u.recv_ok)
    await spin()
    await u.send(9)
    out.append(await t)
    assert out == [
        (0, None),
        (0, 5),
        (0, (6, True)),
        (-1, None),
        (-1, None),
        7,
        (0, (9, True)),
    ]


# -- S3, S5: readiness judged at one instant; default only when nothing is ready ---


@pytest.mark.parametrize(
    "kind",
    ["buffered value", "parked sender", "closed", "buffer room", "parked receiver"],
)
@both
async def test_s3_never_default_when_a_case_is_ready(kind: str) -> None:
    """S3, S5 — TestNonblockSelectRace / TestNonblockSelectRace2: a select with
    default never takes default while some case is ready, whatever makes it ready
    (buffered value, parked sender, closed channel, buffer room, parked receiver)."""
    out: list[Any] = []
    for _ in range(20):
        idle = csp.Chan[int]()  # never ready
        ch = csp.Chan[int](1 if kind in ("buffered value", "buffer room") else 0)
        partner = None
        if kind == "buffered value":
            await ch.send(1)
            case: Any = ch.recv
        elif kind == "parked sender":
            partner = csp.go(ch.send, 1)
            case = ch.recv
        elif kind == "closed":
            ch.close()
            case = ch.recv_ok
        elif kind == "buffer room":
            case = (ch.send, 1)
        else:
            partner = csp.go(ch.recv)
            case = (ch.send, 1)
        await spin(2)
        res = await csp.select(idle.recv, case, (idle.send, 0), default=True)
        out.append(res)
        if partner is not None:
            await partner
    expected = {
        "buffered value": (1, 1),
        "parked sender": (1, 1),
        "closed": (1, (None, False)),
        "buffer room": (1, None),
        "parked receiver": (1, None),
    }[kind]
    assert out == [expected] * 20


@both
async def test_s5_default_when_nothing_ready_takes_no_effect() -> None:
    """S5 — test/chan/nonblock.go, closedchan.go Nbsend/Nbrecv: with nothing ready,
    default returns (-1, None) at once and nothing else happens (no value sent, no
    waiter left behind)."""
    a, b = csp.Chan[int](), csp.Chan[int](1)
    await b.send(0)  # b full
    out: list[Any] = []
    for _ in range(3):
        out.append(await csp.select(a.recv, (a.send, 1), (b.send, 2), default=True))
    out.append((repr(a), repr(b)))
    out.append(await b.recv())
    out.append(await csp.select(b.recv, default=True))
    assert out == [
        (-1, None),
        (-1, None),
        (-1, None),
        (
            "<csp.Chan cap=0 len=0 recv_waiters=0 send_waiters=0>",
            "<csp.Chan cap=1 len=1 recv_waiters=0 send_waiters=0>",
        ),
        0,
        (-1, None),
    ]


# -- S4: uniform choice among ready cases ------------------------------------------


def test_chi2_bound_rejects_a_biased_chooser(seeded: None) -> None:
    """S4 — the bound used below has power: a chooser that favours the first ready
    case 5 % of the time (p0 = 0.2875 instead of 0.25) fails it by a wide margin, and
    an honest one passes."""
    rnd = random.Random(7)
    k, n = 4, 8000
    biased = Counter(0 if rnd.random() < 0.05 else rnd.randrange(k) for _ in range(n))
    assert chi2([biased[i] for i in range(k)]) > CHI2_001[k - 1]
    honest = Counter(rnd.randrange(k) for _ in range(n))
    assert chi2([honest[i] for i in range(k)]) < CHI2_001[k - 1]


@both
async def test_s4_ready_cases_chosen_uniformly(seeded: None) -> None:
    """S4 — TestSelectFairness: with 4 ready cases (mixed recv, recv_ok and send), each
    is chosen with probability 1/4: over 8000 selects the chi-square statistic is
    below the p=0.001 critical value (16.266, 3 degrees of freedom)."""
    N = 8000
    a, b, c, d = (csp.Chan[int](1) for _ in range(4))
    for ch in (a, b, c):
        await ch.send(0)
    counts = [0] * 4
    for _ in range(N):
        i, _ = await csp.select(a.recv, b.recv_ok, c.recv, (d.send, 1))
        counts[i] += 1
        if i == 3:
            await d.recv()  # room again
        else:
            await (a, b, c)[i].send(0)  # ready again
    assert sum(counts) == N
    assert chi2(counts) < CHI2_001[3], counts


@both
async def test_s4_parked_partners_chosen_uniformly(seeded: None) -> None:
    """S4 — TestPseudoRandomSend / TestSelectFairness: ready because of parked
    senders (not buffers), two cases are chosen about equally (chi-square, 1 dof)."""
    N = 2000
    a, b = csp.Chan[int](), csp.Chan[int]()

    async def sender(ch: csp.Chan[int]) -> None:
        while True:
            await ch.send(1)

    senders = [csp.go(sender, ch) for ch in (a, b)]
    await spin(2)
    counts = [0, 0]
    for _ in range(N):
        i, v = await csp.select(a.recv, b.recv)
        assert v == 1
        counts[i] += 1
        await spin(2)  # let the chosen sender park again
    for t in senders:
        t.cancel()  # (they send forever: parked partners for every select)
    assert sum(counts) == N
    assert chi2(counts) < CHI2_001[1], counts


# -- S6: a parked select commits exactly one case ----------------------------------


@both
async def test_s6_doubleselect_no_value_received_twice() -> None:
    """S6 — test/chan/doubleselect.go: producers select-send each value on one of three
    channels; three muxers forward to one output. Every value arrives exactly once
    (a parked select never commits twice, never loses one)."""
    N, P = 400, 3
    chans = [csp.Chan[int]() for _ in range(3)]
    out = csp.Chan[int]()

    async def producer(base: int) -> None:
        for i in range(base, base + N):
            await csp.select(*[(c.send, i) for c in chans])

    async def mux(c: csp.Chan[int]) -> None:
        async for v in c:
            await out.send(v)

    for p in range(P):
        csp.go(producer, p * N)
    for c in chans:
        csp.go(mux, c)
    got: Counter[int] = Counter()
    for _ in range(N * P):
        got[await out.recv()] += 1  # type: ignore[index]
    for c in chans:
        c.close()  # the muxers' range loops end (doubleselect.go closes them too)
    await spin()
    # nothing more arrives: every producer finished, no duplicate in flight
    assert await csp.select(out.recv, default=True) == (-1, None)
    assert got == Counter(range(N * P))


@both
async def test_s6_parked_receiving_select_takes_exactly_one() -> None:
    """S6 — select6.go (Issue 2075): a consumer parked in select on several channels,
    with senders on all of them, takes exactly one value per select; every sender
    finishes and the multiset received equals the one sent."""
    N = 300
    chans = [csp.Chan[int]() for _ in range(3)]

    async def sender(k: int) -> None:
        for i in range(N):
            await chans[k].send(k * N + i)

    for k in range(3):
        csp.go(sender, k)
    got: Counter[int] = Counter()
    selects = 0
    for _ in range(3 * N):
        _, v = await csp.select(*[c.recv for c in chans])
        got[v] += 1
        selects += 1
    await spin()
    n = csp.num_goroutine()
    assert got == Counter(range(3 * N))
    assert n == 1


@both
async def test_s6_s13_losing_send_cases_are_withdrawn() -> None:
    """S6, S13 — a parked select offering x on a and y on b commits on a; y is then
    dropped: a later receiver on b does not get it, and b shows no live waiter."""
    a, b = csp.Chan[str](), csp.Chan[str]()
    t = csp.go(csp.select, (a.send, "x"), (b.send, "y"))
    await spin()
    out: list[Any] = [repr(b)]
    out.append(await a.recv())
    out.append(await t)
    out.append(repr(b))
    out.append(await csp.select(b.recv, default=True))
    assert out == [
        "<csp.Chan cap=0 len=0 recv_waiters=0 send_waiters=1>",
        "x",
        (0, None),
        "<csp.Chan cap=0 len=0 recv_waiters=0 send_waiters=0>",
        (-1, None),
    ]


# -- S7, S8: nil cases; select() ------------------------------------------------------


@both
async def test_s7_nil_cases_never_chosen(seeded: None) -> None:
    """S7 — select3.go, select5.go, test/chan/select.go (``a = nil``): csp.nil cases are
    never chosen, even mixed with ready cases, and never make a select ready."""
    ch = csp.Chan[int](1)
    nil = csp.nil
    seen: Counter[int] = Counter()
    for _ in range(200):
        await ch.send(1)
        i, _ = await csp.select(nil.recv, (nil.send, 1), ch.recv, nil.recv_ok)
        seen[i] += 1
    out: list[Any] = [dict(seen)]
    out.append(await csp.select(nil.recv, (nil.send, 1), nil.recv_ok, default=True))
    # a parked select with nil cases is woken only by its real case
    t = csp.go(csp.select, nil.recv, ch.recv, (nil.send, 2))
    await spin()
    out.append(t.done())
    await ch.send(3)
    out.append(await t)
    assert out == [{2: 200}, (-1, None), False, (1, 3)]


@both
async def test_s7_all_nil_select_blocks_forever() -> None:
    """S7 — select3.go: a select whose cases are all nil (no default) blocks forever
    (until cancelled), and its cancellation leaves nothing behind."""
    t = csp.go(csp.select, csp.nil.recv, (csp.nil.send, 1))
    await spin(20)
    out: list[Any] = [t.done()]
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    out.append(repr(csp.nil))
    assert out == [False, "<csp.nil>"]


@both
async def test_s8_empty_select_blocks_forever() -> None:
    """S8 — select3.go: ``select {}`` blocks forever; ``await csp.select()`` raises
    only the cancellation that ends it (task.cancel or a timeout)."""
    t = csp.go(csp.select)
    await spin(20)
    out: list[Any] = [t.done()]
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    out.append(t.cancelled())
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.001):
            await csp.select()
    out.append(await csp.select(default=True))
    assert out == [False, True, (-1, None)]


# -- S9, S10: closed channels ------------------------------------------------------


@both
async def test_s9_send_case_on_closed_channel_raises_over_default() -> None:
    """S9 — select3.go, closedchan.go SChan/SSChan: a send case on a closed channel is
    ready, so it is chosen over default, and raises ``send on closed channel``."""
    ch = csp.Chan[int](1)
    ch.close()
    for _ in range(10):
        with pytest.raises(csp.ClosedChannelError, match=r"^send on closed channel$"):
            await csp.select((ch.send, 1), default=True)
        with pytest.raises(csp.ClosedChannelError, match=r"^send on closed channel$"):
            await csp.select((ch.send, 1), csp.Chan[int]().recv)


@both
async def test_s9_send_and_recv_on_same_closed_channel_is_a_coin_flip(seeded: None) -> None:
    """S9 — select3.go: with a send and a receive case on the same closed channel, the
    outcome is a coin flip (about 50 % panic), chi-square bound with 1 dof."""
    N = 2000
    ch = csp.Chan[int]()
    ch.close()
    counts = [0, 0]
    for _ in range(N):
        try:
            i, v = await csp.select(ch.recv_ok, (ch.send, 1))
            assert (i, v) == (0, (None, False))
            counts[0] += 1
        except csp.ClosedChannelError:
            counts[1] += 1
    assert chi2(counts) < CHI2_001[1], counts


@both
async def test_s10_parked_select_woken_by_close() -> None:
    """S10 — Seen (Go 1.19): a parked select woken by close commits to that case:
    recv -> (i, None), recv_ok -> (i, (None, False)), send -> ClosedChannelError; the
    other cases are not re-polled and take no effect."""
    out: list[Any] = []
    other = csp.Chan[int]()
    for kind in ("recv", "recv_ok", "send"):
        ch = csp.Chan[int]()
        case: Any = {"recv": ch.recv, "recv_ok": ch.recv_ok, "send": (ch.send, 1)}[kind]

        async def sel(case: Any = case) -> Any:
            try:
                return await csp.select(other.recv, case, (other.send, 2))
            except csp.ClosedChannelError as e:
                return str(e)

        t = csp.go(sel)
        await spin()
        ch.close()
        out.append(await t)
        out.append(repr(other))
    idle = "<csp.Chan cap=0 len=0 recv_waiters=0 send_waiters=0>"
    assert out == [(1, None), idle, (1, (None, False)), idle, "send on closed channel", idle]


# -- S11: the same channel in several cases --------------------------------------


@both
async def test_s11_self_select_never_pairs_with_itself() -> None:
    """S11 — TestSelfSelect, select3.go ("sees itself"): send and receive on the same
    unbuffered channel in one select: alone it blocks; two goroutines doing it pair
    with each other, never with themselves."""
    N = 300
    c = csp.Chan[int]()
    alone = csp.go(csp.select, (c.send, 0), c.recv)
    await spin(20)
    out: list[Any] = [alone.done()]
    alone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await alone
    done = csp.Chan[Counter[str]]()

    async def peer(p: int) -> None:
        seen: Counter[str] = Counter()
        for _ in range(N):
            i, v = await csp.select((c.send, p), c.recv)
            if i == 1:
                seen["self receive" if v == p else "recv"] += 1
            else:
                seen["sent"] += 1
        await done.send(seen)

    csp.go(peer, 1)
    csp.go(peer, 2)
    total = await done.recv()
    total += await done.recv()  # type: ignore[operator]
    out.append(dict(total))  # type: ignore[arg-type]
    res = out
    assert res[0] is False
    assert res[1] == {"sent": N, "recv": N}


@both
async def test_s11_duplicated_case_raises_its_weight(seeded: None) -> None:
    """S11 — TestSelectDuplicateChannel: each occurrence of a case gets its own random
    slot: select(a.recv, a.recv, b.recv) with both ready picks each index 1/3 of the
    time, so a is received 2/3 of the time (chi-square on the 3 indices, 2 dof)."""
    N = 3000
    a, b = csp.Chan[int](1), csp.Chan[int](1)
    await a.send(0)
    await b.send(0)
    counts = [0, 0, 0]
    for _ in range(N):
        i, _ = await csp.select(a.recv, a.recv, b.recv)
        counts[i] += 1
        await (b if i == 2 else a).send(0)
    assert sum(counts) == N
    assert chi2(counts) < CHI2_001[2], counts
    # the channel-level split: 2:1, far from the 1:1 of deduplicated cases
    assert chi2([counts[0] + counts[1], counts[2]]) > CHI2_001[1]


@both
async def test_s11_same_channel_in_several_cases_parked() -> None:
    """S11 — TestSelectDuplicateChannel, select6.go: a select parked with the same
    channel in several cases commits once; the queue stays intact for other waiters
    (a plain receiver queued behind gets the next value)."""
    c = csp.Chan[int]()
    got: list[Any] = []

    async def sel() -> None:
        got.append(("sel", await csp.select(c.recv, c.recv_ok, c.recv)))

    async def plain() -> None:
        got.append(("plain", await c.recv()))

    s = csp.go(sel)
    await spin()
    p = csp.go(plain)
    await spin()
    await c.send(1)
    await c.send(2)
    await asyncio.gather(s, p)
    idx = got[0][1][0]
    assert [got[0][0], got[1], idx in (0, 1, 2), repr(c)] == [
        "sel",
        ("plain", 2),
        True,
        "<csp.Chan cap=0 len=0 recv_waiters=0 send_waiters=0>",
    ]


@both
async def test_parked_select_registers_in_random_order(seeded: None) -> None:
    """S4/S6 (API.md: "a parked select registers its cases in a fresh random order"):
    a select parked with two send cases on one channel is completed by a receiver
    through either case; over 400 runs both values are seen, about equally."""
    N = 400
    counts = [0, 0]
    for _ in range(N):
        c = csp.Chan[str]()
        t = csp.go(csp.select, (c.send, "first"), (c.send, "second"))
        await spin(2)
        v = await c.recv()
        i, _ = await t
        assert v == ("first", "second")[i]
        counts[i] += 1
    assert min(counts) > 0
    assert chi2(counts) < CHI2_001[1], counts


# -- bad input ---------------------------------------------------------------------


@both
async def test_bad_case_shapes_raise_type_error() -> None:
    """S1 — a case of the wrong shape (a channel, a 3-tuple, (ch.recv, 1), a value, a
    send method without a value) raises TypeError naming the case by index."""
    ch = csp.Chan[int](1)
    msgs = []
    bads: list[Any] = [
        ch,
        (ch.send, 1, 2),
        (ch.recv, 1),
        42,
        ch.send,
        [ch.send, 1],
        (ch.send,),
        ch.close,
    ]
    for bad in bads:
        with pytest.raises(TypeError) as ei:
            await csp.select(ch.recv_ok, bad)
        msgs.append(str(ei.value))
    # nothing took effect: the valid case 0 was not run
    await ch.send(5)
    assert await ch.recv() == 5
    assert len(msgs) == 8
    for m in msgs:
        assert m.startswith("select case 1: expected ch.recv, ch.recv_ok or (ch.send, value)")


def test_coroutine_passed_as_case_is_closed(run: Run, recwarn: pytest.WarningsRecorder) -> None:
    """S1 — ``ch.recv()`` (called) instead of ``ch.recv``: TypeError with a hint, and
    the coroutine is closed, so no "coroutine ... was never awaited" RuntimeWarning."""

    async def main() -> list[Any]:
        ch = csp.Chan[int](1)
        out: list[Any] = []
        coros: list[Any] = []
        for make in (
            lambda: ch.recv(),
            lambda: ch.recv_ok(),
            lambda: ch.send(1),
            lambda: (ch.send(1), 1),
        ):
            case = make()
            coros.append(case[0] if isinstance(case, tuple) else case)
            with pytest.raises(TypeError) as ei:
                await csp.select(case)
            out.append(str(ei.value).split(":")[0])
        out.append([c.cr_frame is None for c in coros])  # closed
        out.append(len(ch))  # the send coroutines never ran
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        res = run(main)
        gc.collect()
    assert res == ["select case 0"] * 4 + [[True] * 4, 0]
    assert [str(w.message) for w in recwarn if w.category is RuntimeWarning] == []


def test_every_coroutine_passed_as_case_is_closed(
    run: Run, recwarn: pytest.WarningsRecorder
) -> None:
    """S1 — ``select(a.recv(), b.recv())``: both arguments are coroutines created by
    mistake; the TypeError names case 0, and *every* such coroutine is closed, not only
    the one that was reported (no "never awaited" RuntimeWarning for b.recv())."""

    async def main() -> list[Any]:
        a, b = csp.Chan[int](), csp.Chan[int]()
        ca, cb = a.recv(), b.recv()
        with pytest.raises(TypeError) as ei:
            await csp.select(ca, cb)
        c42 = b.recv()
        with pytest.raises(TypeError):
            await csp.select(a.recv, 42, c42)
        return [
            str(ei.value).split(":")[0],
            ca.cr_frame is None,
            cb.cr_frame is None,
            c42.cr_frame is None,
        ]

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        res = run(main)
        gc.collect()
    assert res == ["select case 0", True, True, True]
    assert [str(w.message) for w in recwarn if w.category is RuntimeWarning] == []


# -- memory: a finished select holds nothing (issue 13 item 6) --------------------------


class Payload:
    """A weak-referenceable value to send: its weakref dies when nothing holds it."""


@both
async def test_select_send_cut_off_by_a_timer_lets_its_value_go(gc_off: None) -> None:
    """The issue's case: ``select((ch.send, big), after(0.001).recv)`` with no receiver
    takes the timer case; the send case leaves ch's queue and lets go of its value at
    once (the collector is off: before, the select's case ring was a cycle that kept
    every value, 10 MiB each in the issue, until a collection)."""
    ch = csp.Chan[Payload]()
    out: list[Any] = []
    for _ in range(3):
        p = Payload()
        ref = weakref.ref(p)
        i, _v = await csp.select((ch.send, p), csp.after(0.001).recv)
        del p
        out.append((i, ref() is None, len(ch._sendq), repr(ch)))
    assert out == [
        (1, True, 0, "<csp.Chan cap=0 len=0 recv_waiters=0 send_waiters=0>")] * 3


@both
async def test_select_woken_on_one_case_leaves_nothing_in_the_others(gc_off: None) -> None:
    """A parked select woken on c (Go's third pass): its cases on a and b leave their
    queues, every case lets go of what it offered and the ring is broken, and the
    finished goroutine, its select waiter and the values are freed by reference
    counting (the collector is off: before, the ring kept each finished select
    goroutine, 7 objects, for the collector)."""
    a, b, c = csp.Chan[Payload](), csp.Chan[Payload](), csp.Chan[int]()
    pa, pb = Payload(), Payload()
    refs = [weakref.ref(pa), weakref.ref(pb)]
    t = csp.go(csp.select, (a.send, pa), (b.send, pb), c.recv)
    del pa, pb
    await spin(3)
    cases = [a._sendq.head, b._sendq.head, c._recvq.head]
    assert all(n is not None for n in cases)
    refs.append(weakref.ref(t))
    await c.send(7)
    result = await t
    del t
    await spin(3)
    out: list[Any] = [result, len(a._sendq), len(b._sendq), len(c._recvq)]
    out.append([(n.q, n.sib, n.value) for n in cases])
    out.append([r() is None for r in refs])
    assert out == [(2, 7), 0, 0, 0, [(None, None, None)] * 3, [True] * 3]


@pytest.mark.parametrize("how", ["cancel", "timeout"])
@both
async def test_withdrawn_select_leaves_nothing_queued_and_lets_its_values_go(
        gc_off: None, how: str) -> None:
    """A select cancelled (or timed out by asyncio.timeout) while parked unlinks every
    case at once and lets go of the values it offered; nothing holds them after."""
    a, b = csp.Chan[Payload](), csp.Chan[int]()
    p = Payload()
    ref = weakref.ref(p)
    if how == "cancel":
        t = csp.go(csp.select, (a.send, p), b.recv)
        await spin(3)
        assert len(a._sendq) == 1 and len(b._recvq) == 1
        t.cancel()
        await spin(3)
        assert t.cancelled()
        del t
    else:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.001):
                await csp.select((a.send, p), b.recv)
    del p
    assert [ref() is None, repr(a), repr(b)] == [
        True, "<csp.Chan cap=0 len=0 recv_waiters=0 send_waiters=0>",
        "<csp.Chan cap=0 len=0 recv_waiters=0 send_waiters=0>"]


def test_select_whose_loop_was_closed_is_skipped_by_every_case(
        run: Run, park_dead: Callable[..., Any]) -> None:
    """Item 10: a select left parked by a loop closed by hand is withdrawn when a
    partner reaches any of its cases (and all its cases leave their queues), so a send
    goes to the live receiver behind it and nothing is lost."""
    a, b = csp.Chan[int](), csp.Chan[int]()
    park_dead(csp.select, a.recv, b.recv, go=True)
    assert len(a._recvq) == 1 and len(b._recvq) == 1

    async def main() -> list[Any]:
        got: list[Any] = []

        async def receiver() -> None:
            got.append(await csp.select(a.recv, b.recv))

        csp.go(receiver)
        await spin(3)
        await a.send(5)
        await spin(3)
        got += [len(a._recvq), len(b._recvq)]
        return got

    assert run(main) == [(0, 5), 0, 0]


# -- priority=True (API.md, Channel family) ------------------------------------------


@pytest.mark.asyncio
async def test_priority_select_always_takes_the_first_ready_case() -> None:
    """With several cases ready, ``priority=True`` takes the first in argument order,
    every time (200 selects over three ready channels: always case 0 until it is
    empty, then case 1); a send case counts the same."""
    a, b, c = csp.Chan[int](200), csp.Chan[int](200), csp.Chan[int](1)
    for i in range(100):
        a.send_nowait(i)
        b.send_nowait(i)
    got = [await csp.select(a.recv, b.recv, (c.send, 9), priority=True)
           for _ in range(201)]
    assert [i for i, _ in got] == [0] * 100 + [1] * 100 + [2]
    assert [v for _, v in got[:100]] == list(range(100))


@pytest.mark.asyncio
async def test_priority_select_parks_as_any_select() -> None:
    """Nothing ready: a priority select parks and the first case to be completed wins;
    ``default=True`` still returns (-1, None)."""
    a, b = csp.Chan[int](), csp.Chan[int]()
    assert await csp.select(a.recv, b.recv, priority=True, default=True) == (-1, None)
    t = csp.go(csp.select, a.recv, b.recv, priority=True)
    await csp.gosched()
    await b.send(3)
    assert await t == (1, 3)


@pytest.mark.asyncio
async def test_priority_must_be_a_bool() -> None:
    with pytest.raises(TypeError) as ei:
        await csp.select(csp.Chan[int](1).recv, priority=1)  # type: ignore[arg-type]
    assert str(ei.value) == "select: priority must be True or False, got 1"
