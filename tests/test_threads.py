"""csp._threads: channels, select and wait groups across threads and event loops.

Every test counts values with a ledger (each value sent once, received once, in each
sender's order) and synchronises with channels, events and joins, never with sleeps.
The loop side runs on both loops; the mode tests check when csp takes its lock.
"""

from __future__ import annotations

import _thread
import asyncio
import functools
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schedfuzz
from conftest import LOOPS
from test_cancellation import MECHS, Ledger, _attempt

import csp
from csp import _threads
from csp._threads import BUDGET, budget, shared

both = pytest.mark.parametrize("loop", LOOPS)

JOIN = 60.0  # seconds a test waits for a thread it started (a hang fails, not blocks)


def start(fn: Callable[..., Any], *args: Any) -> threading.Thread:
    t = threading.Thread(target=fn, args=args, daemon=True)
    t.start()
    return t


def join(*threads: threading.Thread) -> None:
    for t in threads:
        t.join(JOIN)
        assert not t.is_alive(), f"{t.name} still runs after {JOIN} s"


class Errors:
    """Exceptions raised in helper threads, re-raised in the test."""

    def __init__(self) -> None:
        self.caught: list[BaseException] = []

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            try:
                return fn(*args)
            except BaseException as exc:
                self.caught.append(exc)
                raise

        return run

    def check(self) -> None:
        if self.caught:
            raise self.caught[0]


@pytest.fixture
def errors() -> Iterator[Errors]:
    e = Errors()
    yield e
    e.check()


# -- the mode ---------------------------------------------------------------------------


def test_single_mode_until_a_thread_starts_and_back_when_it_is_gone() -> None:
    """No thread but the main one (pytest-timeout's watchdog is quiet): single mode,
    the budget refills to BUDGET. Starting a thread turns shared mode on in the
    starting thread, before the new one runs; once it is gone, the next refill on the
    main thread turns it off."""
    if shared.forced:
        pytest.skip("the suite runs in shared mode (CSP_TEST_SHARED=1)")
    _threads.maybe_single()
    assert (shared.on, budget.full) == (False, BUDGET)
    seen: list[bool] = []
    t = threading.Thread(target=lambda: seen.append(shared.on))
    t.start()
    assert shared.on and budget.full == 0  # on before start() returned
    t.join()
    assert seen == [True]

    async def ops() -> None:
        ch = csp.Chan[int](1)
        for i in range(2 * BUDGET + 2):  # crosses a refill, back to single mode
            await ch.send(i)
            assert await ch.recv() == i
        assert not shared.on

    csp.run(ops)
    assert (shared.on, budget.full) == (False, BUDGET)


def test_back_to_single_mode_when_every_operation_parks() -> None:
    """Once the thread is gone, the switch back to single mode comes even when every
    operation parks (an unbuffered ping-pong): a park in shared mode does not restart
    the count that leads to the check (before, it did, and shared mode stayed on)."""
    if shared.forced:
        pytest.skip("the suite runs in shared mode (CSP_TEST_SHARED=1)")
    _threads.maybe_single()
    t = threading.Thread(target=lambda: None)
    t.start()
    t.join()
    assert shared.on

    async def pingpong() -> None:
        a, b = csp.Chan[int](), csp.Chan[int]()

        async def echo() -> None:
            for _ in range(2 * BUDGET + 2):
                await b.send(await a.recv())

        csp.go(echo)
        for i in range(2 * BUDGET + 2):
            await a.send(i)
            assert await b.recv() == i
        assert not shared.on

    csp.run(pingpong)
    assert (shared.on, budget.full) == (False, BUDGET)


def test_compat_thread_start_hook_selftest() -> None:
    from csp import _compat

    assert _compat._selftest_thread_start() == []


def test_stranger_thread_turns_shared_mode_on_and_waits_for_the_loop(errors: Errors) -> None:
    """A thread csp did not see start (simulated: shared mode switched off by hand
    while it waits) turns shared mode on at its first call, after the running loop
    passed a safe point; its value arrives."""
    if shared.forced:
        pytest.skip("the suite runs in shared mode (CSP_TEST_SHARED=1)")
    go_on = threading.Event()
    ch = csp.Chan[int](1)
    got: list[int | None] = []

    def stranger() -> None:
        go_on.wait(JOIN)
        ch.send_nowait(7)

    async def main() -> None:
        t = start(errors.wrap(stranger))
        with _threads.lock:
            _threads._set(False)  # (the stranger waits: nobody else is in csp)
        go_on.set()
        got.append(await ch.recv())
        assert shared.on and shared.strangers == 1
        await asyncio.to_thread(join, t)

    try:
        csp.run(main)
    finally:
        shared.strangers = 0
        _threads.maybe_single()
    assert got == [7]


# -- threads and goroutines ------------------------------------------------------------


@both
def test_four_threads_into_one_channel_drained_by_goroutines(loop: str, errors: Errors) -> None:
    """4 threads x 10,000 values into one channel, drained by 3 goroutines: every
    value received exactly once, each sender's values in order at every receiver."""
    nthreads, n = 4, 10_000
    got: list[list[tuple[int, int]]] = [[], [], []]

    def producer(ch: csp.Chan[tuple[int, int]], k: int) -> None:
        for i in range(n):
            ch.send_blocking((k, i))

    async def main() -> None:
        ch = csp.Chan[tuple[int, int]](16)
        wg = csp.WaitGroup()

        async def drain(mine: list[tuple[int, int]]) -> None:
            async for v in ch:
                mine.append(v)

        for mine in got:
            wg.go(drain, mine)
        ts = [start(errors.wrap(producer), ch, k) for k in range(nthreads)]
        await asyncio.to_thread(join, *ts)
        ch.close()
        await wg.wait()

    csp.run(main, loop=loop)
    everything = [v for mine in got for v in mine]
    assert Counter(everything) == Counter((k, i) for k in range(nthreads) for i in range(n))
    for mine in got:
        for k in range(nthreads):
            seq = [i for kk, i in mine if kk == k]
            assert seq == sorted(seq)


@both
def test_goroutine_to_threads_stream(loop: str, errors: Errors) -> None:
    """A goroutine sends 20,000 values to 2 threads in recv_ok_blocking; close ends
    both; every value once, in order per thread."""
    n = 20_000
    got: list[list[int]] = [[], []]

    def consumer(ch: csp.Chan[int], mine: list[int]) -> None:
        while True:
            v, ok = ch.recv_ok_blocking()
            if not ok:
                return
            assert v is not None
            mine.append(v)

    async def main() -> None:
        ch = csp.Chan[int](8)
        ts = [start(errors.wrap(consumer), ch, mine) for mine in got]
        for i in range(n):
            await ch.send(i)
        ch.close()
        await asyncio.to_thread(join, *ts)

    csp.run(main, loop=loop)
    assert sorted(got[0] + got[1]) == list(range(n))
    assert all(mine == sorted(mine) for mine in got)


@both
def test_thread_goroutine_ping_pong(loop: str, errors: Errors) -> None:
    n = 3_000

    def pong(a: csp.Chan[int], b: csp.Chan[int]) -> None:
        for _ in range(n):
            v = a.recv_blocking()
            assert v is not None
            b.send_blocking(v + 1)

    async def main() -> int:
        a, b = csp.Chan[int](), csp.Chan[int]()
        t = start(errors.wrap(pong), a, b)
        total = 0
        for i in range(n):
            await a.send(i)
            r = await b.recv()
            assert r == i + 1
            total += 1
        await asyncio.to_thread(join, t)
        return total

    assert csp.run(main, loop=loop) == n


def _two_loops_ping_pong(n: int, loop_a: str, loop_b: str, errors: Errors) -> None:
    a, b = csp.Chan[int](), csp.Chan[int]()

    async def ponger() -> None:
        for _ in range(n):
            v = await a.recv()
            assert v is not None
            await b.send(v + 1)

    async def pinger() -> int:
        for i in range(n):
            await a.send(i)
            assert await b.recv() == i + 1
        return n

    t = start(errors.wrap(functools.partial(csp.run, ponger, loop=loop_b)))
    assert csp.run(pinger, loop=loop_a) == n
    join(t)


@pytest.mark.parametrize(("loop_a", "loop_b"), [(x, y) for x in LOOPS for y in LOOPS])
def test_two_loops_ping_pong(loop_a: str, loop_b: str, errors: Errors) -> None:
    _two_loops_ping_pong(3_000, loop_a, loop_b, errors)


@pytest.mark.slow
@both
def test_two_loops_ping_pong_100k(loop: str, errors: Errors) -> None:
    _two_loops_ping_pong(100_000, loop, loop, errors)


@both
def test_select_on_loop_a_over_channels_fed_by_loop_b_and_threads(
    loop: str, errors: Errors
) -> None:
    """A select on loop A over a channel fed by loop B's goroutines, one fed by two
    threads, and a quit channel closed from a third thread at the end:
    every value once, in order per sender, then the done case."""
    n = 2_000
    from_b = csp.Chan[tuple[str, int]]()
    from_threads = csp.Chan[tuple[str, int]](4)
    ready = threading.Event()

    async def loop_b() -> None:
        for i in range(n):
            await from_b.send(("b", i))

    def feeder(name: str) -> None:
        for i in range(n):
            from_threads.send_blocking((name, i))

    async def main() -> list[tuple[str, int]]:
        quit = csp.Chan[None]()
        got: list[tuple[str, int]] = []
        tb = start(errors.wrap(functools.partial(csp.run, loop_b, loop=loop)))
        ts = [start(errors.wrap(feeder), name) for name in ("t1", "t2")]

        def finish() -> None:
            join(tb, *ts)
            ready.set()
            quit.close()  # from this thread

        tf = start(errors.wrap(finish))
        while True:
            i, v = await csp.select(from_b.recv, from_threads.recv, quit.recv)
            if i == 2:
                break
            got.append(v)
        assert ready.is_set()
        await asyncio.to_thread(join, tf)
        return got

    got = csp.run(main, loop=loop)
    assert len(got) == 3 * n
    for name in ("b", "t1", "t2"):
        assert [i for who, i in got if who == name] == list(range(n))


@both
def test_close_from_another_thread_wakes_parked_receivers_at_once(
    loop: str, errors: Errors
) -> None:
    """Three goroutines parked on recv_ok, one select, and a thread parked in
    recv_blocking: close() from another thread wakes all of them within a second
    (asyncio's selector would otherwise sleep until its next event)."""
    got: list[Any] = []

    async def main() -> None:
        ch = csp.Chan[int]()
        wg = csp.WaitGroup()

        async def rx() -> None:
            got.append(await ch.recv_ok())

        async def sel() -> None:
            got.append(await csp.select(ch.recv_ok))

        for _ in range(3):
            wg.go(rx)
        wg.go(sel)
        tr = start(errors.wrap(lambda: got.append(ch.recv_ok_blocking(timeout=JOIN))))
        while ch._waiting()[0] < 5:  # all five parked (a bounded number of turns)
            await csp.gosched()
        t0 = time.monotonic()
        tc = start(errors.wrap(ch.close))
        async with asyncio.timeout(1.0):
            await wg.wait()
        assert time.monotonic() - t0 < 1.0
        await asyncio.to_thread(join, tc, tr)

    csp.run(main, loop=loop)
    assert sorted(map(repr, got)) == sorted(
        map(repr, [(None, False)] * 4 + [(0, (None, False))]))


# -- timeouts and cancellation on both sides -----------------------------------------


def test_blocking_timeouts_take_no_effect() -> None:
    """recv_blocking / send_blocking / select_blocking / wait_blocking that time out
    took nothing, sent nothing, committed no case, and left nothing parked."""
    ch = csp.Chan[int]()
    for call in (lambda: ch.recv_blocking(timeout=0.01),
                 lambda: ch.recv_ok_blocking(timeout=0),
                 lambda: ch.send_blocking(1, timeout=0.01),
                 lambda: csp.select_blocking(ch.recv, (ch.send, 2), timeout=0.01)):
        with pytest.raises(TimeoutError, match="timed out after"):
            call()
        assert ch._waiting() == (0, 0)
    buf = csp.Chan[int](1)
    buf.send_blocking(5, timeout=0)  # room: completes at once, timeout or not
    with pytest.raises(TimeoutError):
        buf.send_blocking(6, timeout=0.01)
    assert (len(buf), buf.recv_blocking(timeout=0)) == (1, 5)
    wg = csp.WaitGroup()
    wg.add(1)
    with pytest.raises(TimeoutError, match="wait_blocking"):
        wg.wait_blocking(timeout=0.01)
    wg.done()
    wg.wait_blocking(timeout=0)


@pytest.mark.parametrize("bad", ["1", -float("nan"), True])
def test_blocking_timeout_must_be_seconds(bad: object) -> None:
    ch = csp.Chan[int](1)
    with pytest.raises((TypeError, ValueError), match="timeout"):
        ch.recv_blocking(timeout=bad)  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError), match="timeout"):
        csp.select_blocking(ch.recv, timeout=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("loop", [*LOOPS, "fuzz"])
@pytest.mark.parametrize("seed", [*range(3), *(pytest.param(s, marks=pytest.mark.slow)
                                               for s in range(3, 25))])
def test_thread_timeouts_against_cancelled_goroutines_keep_the_ledger(
    loop: str, seed: int, errors: Errors
) -> None:
    """Threads send and receive with short timeouts (send_blocking, recv_blocking,
    select_blocking) while goroutines send and receive under every cancellation
    mechanism (plain, asyncio.timeout, wait_for, anyio scopes) and are cancelled from
    outside at random: every value whose send returned is received exactly once, no
    value whose send raised (timeout, cancellation) is received, and every goroutine
    cancelled from outside ends cancelled or finished its work."""
    rng = random.Random(seed)
    ch = csp.Chan[int](rng.choice([0, 1, 4]))
    ledger = Ledger()
    mu = threading.Lock()
    per_sender = 300

    def thread_sender(base: int, trng: random.Random) -> None:
        for v in range(base, base + per_sender):
            try:
                if trng.random() < 0.5:
                    ch.send_blocking(v, timeout=trng.choice([0, 1e-4, 1e-3, 0.05]))
                else:
                    csp.select_blocking((ch.send, v), timeout=trng.choice([0, 1e-3, 0.05]))
            except TimeoutError:
                with mu:
                    ledger.failed.append(v)
            else:
                with mu:
                    ledger.sent.append(v)

    def thread_receiver(stop: threading.Event, trng: random.Random) -> None:
        while True:
            try:
                v, ok = ch.recv_ok_blocking(timeout=trng.choice([1e-4, 1e-3, 0.05]))
            except TimeoutError:
                if stop.is_set():
                    return
                continue
            if not ok:
                return
            with mu:
                ledger.received.append(v)  # type: ignore[arg-type]

    async def main() -> None:
        scopes: list[Any] = []
        stop = threading.Event()
        senders = [start(errors.wrap(thread_sender), k * per_sender,
                         random.Random(rng.random())) for k in range(2)]
        receivers = [start(errors.wrap(thread_receiver), stop, random.Random(rng.random()))]
        outside: set[asyncio.Task[Any]] = set()

        # (3.11's wait_for returns the inner result when an outer cancellation lands in
        # the same instant, and drops that cancellation: gh-86296, fixed in 3.12. The
        # actors cancelled from outside do not use it there.)
        victim_mechs = MECHS if sys.version_info >= (3, 12) else tuple(
            m for m in MECHS if m != "wait_for")

        async def g_sender(base: int, grng: random.Random, mechs: tuple[str, ...]) -> None:
            for v in range(base, base + per_sender):
                def ok(_: Any, v: int = v) -> None:
                    with mu:
                        ledger.sent.append(v)

                took = await _attempt(grng, grng.choice(mechs), lambda v=v: ch.send(v),
                                      ok, scopes)
                if not took:
                    with mu:
                        ledger.failed.append(v)
            await asyncio.sleep(0)  # a suspension: an owed cancellation is raised here

        async def g_receiver(grng: random.Random, mechs: tuple[str, ...]) -> None:
            while True:
                def got(r: Any) -> None:
                    if r[1]:
                        with mu:
                            ledger.received.append(r[0])
                    else:
                        raise EOFError

                try:
                    await _attempt(grng, grng.choice(mechs), ch.recv_ok, got, scopes)
                except EOFError:
                    await asyncio.sleep(0)  # (as in g_sender)
                    return

        gsend = [asyncio.ensure_future(g_sender((2 + k) * per_sender,
                                                random.Random(rng.random()),
                                                victim_mechs if k == 0 else MECHS))
                 for k in range(2)]
        grecv = [asyncio.ensure_future(g_receiver(random.Random(rng.random()),
                                                  victim_mechs if k == 0 else MECHS))
                 for k in range(2)]
        # cancel some from outside, at random moments
        victims = [gsend[0], grecv[0]]
        for t in victims:
            for _ in range(rng.randint(1, 50)):
                await asyncio.sleep(0)
            if t.cancel():  # (False: it had finished its work already)
                outside.add(t)
        for t in gsend:
            try:
                await t
            except asyncio.CancelledError:
                assert t in outside
        await asyncio.to_thread(join, *senders)
        ch.close()
        stop.set()
        for t in grecv:
            try:
                await t
            except asyncio.CancelledError:
                assert t in outside
        await asyncio.to_thread(join, *receivers)
        for t in outside:  # every cancellation from outside was delivered
            assert t.cancelled(), t

    if loop == "fuzz":  # the loop side under the schedule fuzzer (real time)
        with schedfuzz.fuzzed(seed, virtual_time=False):
            csp.run(main, loop="asyncio")
    else:
        csp.run(main, loop=loop)
    ledger.check()
    assert len(ledger.sent) + len(ledger.failed) <= 4 * per_sender
    assert len(ledger.received) == len(ledger.sent)


@both
def test_cancelled_goroutine_recv_leaves_the_thread_value_for_the_next(
    loop: str, errors: Errors
) -> None:
    """A goroutine parked on recv is cancelled; a thread's send_blocking then goes to
    the next receiver, not to the cancelled one."""

    async def main() -> int | None:
        ch = csp.Chan[int]()
        t1 = csp.go(ch.recv)
        while ch._waiting()[0] < 1:
            await csp.gosched()
        t1.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t1
        th = start(errors.wrap(ch.send_blocking), 42)
        v = await ch.recv()
        await asyncio.to_thread(join, th)
        return v

    assert csp.run(main, loop=loop) == 42


# -- misuse ----------------------------------------------------------------------------


@both
def test_blocking_calls_on_a_loop_thread_raise_naming_the_fix(loop: str) -> None:
    """Even when it could complete at once: it could block the loop."""

    async def main() -> None:
        ch = csp.Chan[int](1)
        ch.send_nowait(1)
        wg = csp.WaitGroup()
        for call, fix in [(lambda: ch.recv_blocking(), "await ch.recv()"),
                          (lambda: ch.recv_ok_blocking(), "await ch.recv()"),
                          (lambda: ch.send_blocking(2), "await ch.send(v)"),
                          (lambda: csp.select_blocking(ch.recv), "await csp.select(...)"),
                          (lambda: wg.wait_blocking(), "await wg.wait()")]:
            with pytest.raises(RuntimeError, match="event loop is running") as info:
                call()
            assert fix in str(info.value)
        assert ch.recv_nowait() == 1  # nothing was taken

    csp.run(main, loop=loop)


# -- select_blocking and wait groups -----------------------------------------------------


def test_select_blocking_ready_default_and_parked(errors: Errors) -> None:
    a, b = csp.Chan[int](1), csp.Chan[int]()
    assert csp.select_blocking(a.recv, b.recv, default=True) == (-1, None)
    a.send_nowait(3)
    assert csp.select_blocking(a.recv_ok, b.recv) == (0, (3, True))
    t = start(errors.wrap(b.send_blocking), 9)
    assert csp.select_blocking(a.recv, b.recv, timeout=JOIN) == (1, 9)
    join(t)
    t = start(errors.wrap(b.close))
    assert csp.select_blocking(b.recv_ok, timeout=JOIN) == (0, (None, False))
    join(t)
    with pytest.raises(csp.ClosedChannelError, match="send on closed channel"):
        csp.select_blocking((b.send, 1))
    with pytest.raises(TypeError, match="select case 0"):
        csp.select_blocking(a.recv())  # type: ignore[arg-type]


@both
def test_waitgroup_across_threads_and_a_loop(loop: str, errors: Errors) -> None:
    """Threads call add/done; a goroutine awaits wait(); another thread waits with
    wait_blocking; both return once every thread is done."""
    nthreads, per = 4, 500
    returned: list[str] = []

    async def main() -> None:
        wg = csp.WaitGroup()
        wg.add(nthreads)
        gate = threading.Event()

        def worker() -> None:
            gate.wait(JOIN)
            for _ in range(per):
                wg.add(1)
                wg.done()
            wg.done()

        ws = [start(errors.wrap(worker)) for _ in range(nthreads)]
        waiter = start(errors.wrap(lambda: (wg.wait_blocking(timeout=JOIN),
                                            returned.append("thread"))))
        gate.set()
        await wg.wait()
        returned.append("goroutine")
        await asyncio.to_thread(join, waiter, *ws)

    csp.run(main, loop=loop)
    assert sorted(returned) == ["goroutine", "thread"]


# -- deadlock detection --------------------------------------------------------------------


@both
def test_no_false_deadlock_while_a_thread_blocks_in_a_csp_call(loop: str, errors: Errors) -> None:
    """Main parks on b.recv while a thread sits in a.recv_blocking: the thread will be
    completed by main's send, then sends back; no DeadlockError on the way."""

    def echo(a: csp.Chan[int], b: csp.Chan[int]) -> None:
        for _ in range(50):
            v = a.recv_blocking()
            assert v is not None
            b.send_blocking(v * 2)

    async def main() -> int:
        a, b = csp.Chan[int](), csp.Chan[int]()
        t = start(errors.wrap(echo), a, b)
        total = 0
        for i in range(50):
            await a.send(i)
            total += await b.recv() or 0
        await asyncio.to_thread(join, t)
        return total

    assert csp.run(main, loop=loop) == sum(2 * i for i in range(50))


# -- forced thread switches ------------------------------------------------------------------


@pytest.fixture
def tiny_switch_interval() -> Iterator[None]:
    was = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(was)


@pytest.mark.parametrize("seed", [*range(2), *(pytest.param(s, marks=pytest.mark.slow)
                                               for s in range(2, 12))])
def test_thread_switches_inside_operations_keep_the_ledger(
    seed: int, tiny_switch_interval: None, errors: Errors
) -> None:
    """sys.setswitchinterval(1e-6): the GIL changes hands inside operations. Two loops
    and two threads send into one channel and receive from it; select mixes in a
    second channel: every value once, per-sender order kept."""
    rng = random.Random(seed)
    n = 1_500
    ch = csp.Chan[tuple[int, int]](rng.choice([0, 2]))
    side = csp.Chan[tuple[int, int]](rng.choice([0, 1]))
    got: list[tuple[int, int]] = []
    mu = threading.Lock()

    def t_send(k: int) -> None:
        for i in range(n):
            if i % 3:
                ch.send_blocking((k, i))
            else:
                csp.select_blocking((ch.send, (k, i)), (side.send, (k, i)))

    async def l_send(k: int) -> None:
        for i in range(n):
            if i % 2:
                await ch.send((k, i))
            else:
                await csp.select((ch.send, (k, i)), (side.send, (k, i)))

    async def l_recv(count: int) -> None:
        for _ in range(count):
            _, v = await csp.select(ch.recv, side.recv)
            with mu:
                got.append(v)

    def t_recv(count: int) -> None:
        for _ in range(count):
            _, v = csp.select_blocking(ch.recv, side.recv, timeout=JOIN)
            with mu:
                got.append(v)

    async def loop_b() -> None:
        await asyncio.gather(l_send(2), l_recv(n))

    async def main() -> None:
        tb = start(errors.wrap(csp.run), loop_b)
        ts = [start(errors.wrap(t_send), 0), start(errors.wrap(t_send), 1),
              start(errors.wrap(t_recv), n)]
        await asyncio.gather(l_send(3), l_recv(2 * n))
        await asyncio.to_thread(join, tb, *ts)

    csp.run(main)
    assert Counter(got) == Counter((k, i) for k in range(4) for i in range(n))
    for k in range(4):
        # per-sender order holds per channel (a value may overtake through the other)
        seq = [i for kk, i in got if kk == k]
        assert sorted(seq) == list(range(n))


def test_a_thread_started_with_thread_module_is_seen(errors: Errors) -> None:
    """_thread.start_new_thread (no threading.Thread) is not seen starting: the thread
    announces itself at its first call that may come from any thread."""
    done = threading.Event()
    ch = csp.Chan[int](1)

    def raw() -> None:
        try:
            ch.send_nowait(1)
        finally:
            done.set()

    _thread.start_new_thread(errors.wrap(raw), ())
    assert done.wait(JOIN)
    assert ch.recv_nowait() == 1
    assert shared.on  # (it stays on: a stranger keeps shared mode for good)
    if not shared.forced:
        shared.strangers = 0  # (it is gone: let the other tests start in single mode)
        _threads.maybe_single()


def test_wake_ups_from_a_thread_are_batched(errors: Errors) -> None:
    """close() from a thread completes 100 parked receivers of one loop: the loop is
    woken with one call_soon_threadsafe for the batch, not one per receiver."""
    calls = 0

    async def main() -> list[Any]:
        nonlocal calls
        loop = asyncio.get_running_loop()
        orig = loop.call_soon_threadsafe

        def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            if getattr(callback, "__name__", "") == "_take_inbox":
                calls += 1
            return orig(callback, *args, **kwargs)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        ch = csp.Chan[int]()
        tasks = [csp.go(ch.recv_ok) for _ in range(100)]
        while ch._waiting()[0] < 100:
            await csp.gosched()
        t = start(errors.wrap(ch.close))
        got = await asyncio.gather(*tasks)
        await asyncio.to_thread(join, t)
        return got

    got = csp.run(main, loop="asyncio")
    assert got == [(None, False)] * 100
    assert calls == 1  # one loop wake-up for the batch


# -- review: mode switches racing operations ---------------------------------------------


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    from conftest import loop_factory

    return loop_factory(name)


class _LockSpy(csp.Chan[int]):  # type: ignore[misc]  # (final to users)
    """A channel that records every poll made in shared mode without the csp lock held
    by the polling thread (the locking rule: never). ``armed`` says when to look."""

    __slots__ = ("armed", "unlocked")

    def __init__(self, cap: int) -> None:
        super().__init__(cap)
        self.armed: Callable[[], bool] = lambda: True
        self.unlocked = 0

    def _try_recv(self) -> Any:
        if self.armed() and shared.on and not _threads.lock._is_owned():  # type: ignore[attr-defined]
            self.unlocked += 1
        return super()._try_recv()


@both
def test_thread_started_during_a_budget_yield_makes_that_op_lock(
    loop: str, errors: Errors
) -> None:
    """Single mode; main's receive spends the budget and prelude() yields; meanwhile a
    goroutine starts a thread (shared mode on). The receive then must take the lock:
    prelude decided "single" before its yield and answered that after it."""
    if shared.forced:
        pytest.skip("the suite runs in shared mode (CSP_TEST_SHARED=1)")
    _threads.maybe_single()
    assert not shared.on, f"{shared!r}: a thread of an earlier test is left"
    ch = _LockSpy(2 * BUDGET + 8)
    n = BUDGET + 8
    for i in range(n):
        ch.send_nowait(i)
    stop = threading.Event()
    ts: list[threading.Thread] = []

    async def starter() -> None:  # runs first at main's budget yield (main never parks)
        ts.append(start(errors.wrap(stop.wait), JOIN))

    async def main() -> None:
        csp.go(starter)
        for i in range(n):
            assert await ch.recv() == i

    try:
        csp.run(main, loop=loop)
    finally:
        stop.set()
        join(*ts)
    assert ts, "the thread was not started"
    assert ch.unlocked == 0, f"{ch.unlocked} receive(s) polled without the lock in shared mode"


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the opcode trace that forces the "
                    "thread switch at one instruction is written for 3.11's tracing")
@both
def test_stranger_switch_between_a_guards_read_and_write_leaves_no_stale_budget(
    loop: str, errors: Errors, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stranger thread turns shared mode on (budget.left = 0) while the loop thread is
    inside ``budget.left -= 1`` (forced here with an opcode trace at the store: the GIL
    may switch there). The loop's store writes back its stale single-mode count; once
    the stranger's handshake is over, every receive of the loop must still lock."""
    if shared.forced:
        pytest.skip("the suite runs in shared mode (CSP_TEST_SHARED=1)")
    if csp.compiled:
        pytest.skip("compiled core: the guard's read and write are one C step (the GIL "
                    "cannot switch between them)")
    import dis

    from csp._chan import _BaseChan

    go_on, switched, hs_done = threading.Event(), threading.Event(), threading.Event()
    real_handshake = _threads._handshake

    def handshake(me: int) -> None:
        switched.set()  # shared mode is on: the loop thread may store now
        real_handshake(me)

    monkeypatch.setattr(_threads, "_handshake", handshake)
    other = csp.Chan[int](1)

    def stranger() -> None:
        go_on.wait(JOIN)
        other.send_nowait(1)  # its first call: enter() turns shared mode on
        hs_done.set()

    ch = _LockSpy(16)
    ch.armed = hs_done.is_set
    for i in range(8):
        ch.send_nowait(i)
    code = _BaseChan.recv.__code__
    store = next(i.offset for i in dis.get_instructions(code)
                 if i.opname == "STORE_ATTR" and i.argval == "left")
    fired: list[int] = []

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event == "opcode" and frame.f_lasti == store and not fired:
            fired.append(budget.left)
            go_on.set()
            assert switched.wait(JOIN)
        return local

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code is code:
            frame.f_trace_opcodes = True
            return local
        return None

    async def main() -> None:
        await csp.go(asyncio.sleep, 0)  # csp knows this loop (its handshake waits for it)
        sys.settrace(tracer)
        try:
            assert await ch.recv() == 0
        finally:
            sys.settrace(None)
        for _ in range(100_000):  # the loop passes its safe point: the handshake ends
            if hs_done.is_set():
                break
            await asyncio.sleep(0)
        assert hs_done.is_set()
        for i in range(1, 6):
            assert await ch.recv() == i

    t = start(errors.wrap(stranger))
    with _threads.lock:
        _threads._set(False)  # (as if csp had not seen it start: it waits)
    try:
        with asyncio.Runner(loop_factory=_loop_factory(loop)) as runner:
            runner.run(main())
        join(t)
    finally:
        shared.strangers = 0
        _threads.maybe_single()
    assert fired, "the opcode trace did not fire"
    assert ch.unlocked == 0, (
        f"{ch.unlocked} receive(s) after the handshake polled without the lock "
        f"(budget.left written back stale)")


def test_c_thread_parked_in_a_blocking_call_keeps_shared_mode(errors: Errors) -> None:
    """A thread started from C (here: pthread_create through ctypes; _thread._count()
    does not count it) parks in recv_blocking while shared mode is on for another
    reason, so enter() does not register it. Once that other thread is gone, the next
    refill (maybe_single) must not switch to single mode while it is parked in csp."""
    if shared.forced:
        pytest.skip("the suite runs in shared mode (CSP_TEST_SHARED=1)")
    ctypes = pytest.importorskip("ctypes")
    try:
        libc = ctypes.CDLL(None)
        pthread_create, pthread_join = libc.pthread_create, libc.pthread_join
    except (OSError, AttributeError):
        pytest.skip("no pthreads")
    ch = csp.Chan[int]()
    got: list[Any] = []

    def body(_: Any) -> None:
        try:
            got.append(ch.recv_blocking(timeout=JOIN))
        except BaseException as exc:  # (nothing may escape a ctypes callback)
            got.append(exc)

    cb = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(body)
    release = threading.Event()
    other = start(errors.wrap(release.wait), JOIN)  # shared mode on
    assert shared.on
    tid = ctypes.c_ulong()
    assert pthread_create(ctypes.byref(tid), None, cb, None) == 0
    try:
        for _ in range(10**7):  # until it parked (it takes the lock to park)
            with _threads.lock:
                if ch._recvq.head is not None:
                    break
            time.sleep(0)  # (give it the GIL; not a synchronisation)
        assert ch._recvq.head is not None
        release.set()
        join(other)
        _threads.maybe_single()
        still_shared = shared.on
    finally:
        ch.send_nowait(5)
        pthread_join(tid, None)
        shared.strangers = 0
        _threads.maybe_single()
    assert got == [5]
    assert still_shared, "single mode while a C thread is parked in recv_blocking"


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the opcode trace that forces the "
                    "thread switch at one instruction is written for 3.11's tracing")
def test_deadlock_watch_survives_a_thread_queueing_a_callback_while_it_looks(
    errors: Errors,
) -> None:
    """csp.run on asyncio: while the deadlock watch walks the loop's ready deque
    (``AsyncioLoop._csp_busy``), another thread queues a callback
    (``call_soon_threadsafe``: csp's own cross-thread wake-ups do). Forced here with a
    trace at the start of the walk. The walk must not die of "deque mutated during
    iteration" (the watch's check would stay 'checking' for good: no deadlock verdict
    any more, and csp.run's exit could not abandon a stuck goroutine)."""
    from csp._deadlock import AsyncioLoop, ignore_thread

    walk = next(c for c in AsyncioLoop._csp_busy.__code__.co_consts
                if getattr(c, "co_name", "") == "<genexpr>")
    poke, poked = threading.Event(), threading.Event()
    ch = csp.Chan[int]()
    stuck = csp.Chan[int]()
    reported: list[dict[str, Any]] = []
    loops: list[asyncio.AbstractEventLoop] = []
    fired: list[bool] = []

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code is walk and not fired:  # (its deque iterator exists already)
            fired.append(True)
            poke.set()
            assert poked.wait(JOIN)
        return None

    def thread() -> None:
        assert poke.wait(JOIN)
        loops[0].call_soon_threadsafe(lambda: None)
        poked.set()
        ch.send_blocking(1)

    finished = threading.Event()

    def watchdog() -> None:  # a hang fails the test instead of blocking it
        if not finished.wait(10.0):  # (the verdict comes within a second or two)
            stuck.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        loops.append(loop)
        t = start(errors.wrap(thread))
        sys.settrace(tracer)
        try:
            assert await ch.recv() == 1  # all parked: the watch looks (and is traced)
        finally:
            sys.settrace(None)
        join(t)
        await stuck.recv()  # a deadlock now: the watch must still say so

    w = start(watchdog)
    ignore_thread(w)
    try:
        with pytest.raises(csp.DeadlockError):
            csp.run(main, loop="asyncio")
    finally:
        finished.set()
        join(w)
    assert fired, "the watch did not walk the ready deque"
    assert not reported, reported[0]
