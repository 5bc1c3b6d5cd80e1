"""csp/_deadlock.py: the loops csp.run makes and the deadlock watch.

Invariants (API.md, DeadlockError): a program in which main and every goroutine are
blocked on csp operations nothing can complete is reported, naming where each one
waits; a program that can still finish never is (a pending timer, ready callbacks, a
chain of callbacks, I/O, a live task that is not a goroutine mean no deadlock). On
uvloop, which hides its ready queue, a check counts ``call_soon`` calls while it looks
(an instance attribute shadows ``call_soon``); that attribute never outlives a check.

The fixed and the randomized programs run under ``csp.run`` in a child process with an
alarm per program, so that a missed deadlock shows as "hang" in the results instead of
hanging the test run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import random
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from rescue import after_a_look

import csp


def uvloop_missing() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return True
    return False


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
Prog = Callable[[], Coroutine[Any, Any, Any]]


# -- goroutines that yield ----------------------------------------------------------


def test_goroutines_looping_on_gosched_then_finishing_are_no_deadlock(
        run: Callable[..., Any]) -> None:
    """Invariant (no false DeadlockError): 100 goroutines gosched 50 times each while
    main is blocked in csp; then each sends its count to main."""
    async def main() -> int:
        out = csp.Chan[int]()

        async def w() -> None:
            n = 0
            for _ in range(50):
                await csp.gosched()
                n += 1
            await out.send(n)

        for _ in range(100):
            csp.go(w)
        return sum([await out.recv() for _ in range(100)])

    assert run(main) == 5000


def test_goroutines_that_yield_then_all_block_are_a_deadlock(
        run: Callable[..., Any]) -> None:
    """Invariant: 100 goroutines that yield a few times and then all block (main too)
    are reported as a deadlock naming main's operation."""
    async def main() -> None:
        never = csp.Chan[int]()

        async def w() -> None:
            for _ in range(5):
                await csp.gosched()
            await never.send(1)

        for _ in range(100):
            csp.go(w)
        await csp.Chan[int]().recv()

    with pytest.raises(csp.DeadlockError) as ei:
        run(main)
    lines = str(ei.value).splitlines()
    assert lines[0] == "all goroutines are asleep - deadlock!"
    assert lines[2] == "goroutine 1 [chan receive]:"
    # the 100 identical senders: one shown, the other 99 counted (Go's dump, grouped)
    assert [ln for ln in lines if ln.endswith("[chan send]:")] == ["goroutine 2 [chan send]:"]
    assert ("... and 99 more goroutines blocked at the same place "
            "(goroutine 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, ...)") in lines


# -- chains of loop callbacks (the uvloop watch counts call_soon) --------------------


def _chain(schedule: str) -> Callable[[], Any]:
    """main blocks in csp while 10 loop callbacks (no task) run one after another,
    each scheduled by the previous one with ``schedule``; the last starts a goroutine
    that releases main."""
    async def main() -> str:
        loop = asyncio.get_running_loop()
        ch = csp.Chan[str]()

        def step(n: int) -> None:
            if not n:
                csp.go(ch.send, "released")
            elif schedule == "call_soon_threadsafe":
                loop.call_soon_threadsafe(step, n - 1)
            elif schedule == "call_later(0)":
                loop.call_later(0, step, n - 1)
            elif schedule == "call_at(now)":
                loop.call_at(loop.time(), step, n - 1)
            else:
                loop.call_soon(step, n - 1)

        loop.call_soon(step, 10)
        return (await ch.recv()) or ""

    return main


def test_call_soon_chain_is_not_a_deadlock(loop_name: str) -> None:
    """A chain of call_soon callbacks that ends by releasing main: no DeadlockError."""
    assert csp.run(_chain("call_soon"), loop=loop_name) == "released"


def test_call_soon_threadsafe_chain_is_not_a_deadlock(loop_name: str) -> None:
    """The same chain scheduled with ``call_soon_threadsafe`` (what thread-safe
    libraries and concurrent.futures callbacks use, also from the loop's thread)."""
    assert csp.run(_chain("call_soon_threadsafe"), loop=loop_name) == "released"


@pytest.mark.parametrize("schedule", ["call_later(0)", "call_at(now)"])
def test_zero_delay_timer_chain_is_not_a_deadlock(loop_name: str, schedule: str) -> None:
    """The same chain scheduled with ``call_later(0, ...)`` / ``call_at(loop.time())``
    (a pending timer means no deadlock, API.md)."""
    assert csp.run(_chain(schedule), loop=loop_name) == "released"


def test_deadlock_still_reported_after_a_chain_that_wakes_nobody(loop_name: str) -> None:
    """A real deadlock is reported once a 50-callback chain ends without waking
    anyone, and the loop's call_soon is the class's again afterwards."""
    seen: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        lp = asyncio.get_running_loop()
        seen.append(lp)

        def step(n: int) -> None:
            if n:
                lp.call_soon(step, n - 1)

        lp.call_soon(step, 50)
        await csp.Chan[int]().recv()

    with pytest.raises(csp.DeadlockError) as ei:
        csp.run(main, loop=loop_name)
    assert str(ei.value).splitlines()[2] == "goroutine 1 [chan receive]:"
    assert "call_soon" not in vars(seen[0])


def test_watch_removed_when_run_returns_during_a_check(loop_name: str) -> None:
    """main returns right after a chain released it, possibly while a check still
    looks: whatever the watch's state then, it is gone once csp.run has returned."""
    seen: list[asyncio.AbstractEventLoop] = []

    async def main() -> tuple[str, bool]:
        lp = asyncio.get_running_loop()
        seen.append(lp)
        v = await _chain("call_soon")()
        return v, "call_soon" in vars(lp)

    v, watching = csp.run(main, loop=loop_name)
    assert v == "released"
    assert not watching or loop_name == "uvloop"
    assert "call_soon" not in vars(seen[0])


def test_watch_removed_after_a_panic_during_a_check(loop_name: str) -> None:
    """A goroutine started by the last callback of a chain panics while a check looks:
    csp.run raises the panic, and the watch is gone."""
    seen: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        lp = asyncio.get_running_loop()
        seen.append(lp)

        async def boom() -> None:
            raise KeyError("panic")

        def step(n: int) -> None:
            if n:
                lp.call_soon(step, n - 1)
            else:
                csp.go(boom)

        lp.call_soon(step, 10)
        await csp.Chan[int]().recv()

    with pytest.raises(KeyError, match="panic"):
        csp.run(main, loop=loop_name)
    assert "call_soon" not in vars(seen[0])


def test_watch_off_between_checks(loop_name: str) -> None:
    """After a check ended (a callback chain woke main), the program runs on with the
    class's call_soon: later call_soon calls are not counted."""
    async def main() -> tuple[str, bool, int]:
        lp = asyncio.get_running_loop()
        v = await _chain("call_soon")()
        for _ in range(10):  # the check sees main running and ends
            await asyncio.sleep(0)
        return v, "call_soon" in vars(lp), vars(lp).get("_csp_soon", 0)

    assert csp.run(main, loop=loop_name) == ("released", False, 0)


def test_watch_keeps_a_call_soon_the_program_installed(loop_name: str) -> None:
    """A program (a tracing/instrumentation helper) wraps ``loop.call_soon`` on the
    instance; a deadlock check that looks and ends must leave that wrapper in place."""
    async def main() -> tuple[str, bool]:
        lp = asyncio.get_running_loop()
        calls = [0]

        def wrapper(cb: Any, *args: Any, context: Any = None) -> asyncio.Handle:
            calls[0] += 1
            return type(lp).call_soon(lp, cb, *args, context=context)

        lp.call_soon = wrapper  # type: ignore[method-assign]
        v = await _chain("call_soon")()  # a check looks while the chain runs
        for _ in range(10):
            await asyncio.sleep(0)
        return v, vars(lp).get("call_soon") is wrapper

    assert csp.run(main, loop=loop_name) == ("released", True)


# -- programs that deadlock (expected: the reason of goroutine 1) -------------------


async def d_direct_many_times() -> None:
    """A goroutine parks through its Task once, is resumed directly 100 times, then
    blocks; main blocks too."""
    a, b = csp.Chan[int](), csp.Chan[int]()

    async def w() -> None:
        for i in range(100):
            await a.recv()
            await b.send(i)
        await a.recv()

    csp.go(w)
    for i in range(100):
        await a.send(i)
        await b.recv()
    await b.recv()


async def d_yields_then_park() -> None:
    """Goroutines that sleep(0)/gosched between direct wake-ups, then all block."""
    d, never = csp.Chan[int](), csp.Chan[int]()

    async def w() -> None:
        await d.recv()
        for _ in range(3):
            await asyncio.sleep(0)
            await csp.gosched()
            await d.recv()
        await never.recv()

    csp.go(w)
    for i in range(4):
        await d.send(i)
    await asyncio.sleep(0)
    await never.recv()


async def d_after_future_and_timer() -> None:
    """Goroutines blocked on a Future, asyncio.sleep and csp.sleep first, then in csp."""
    loop = asyncio.get_running_loop()
    never = csp.Chan[int]()

    async def on_future() -> None:
        f = loop.create_future()
        loop.call_soon(f.set_result, None)
        await f
        await never.recv()

    async def on_sleep() -> None:
        await asyncio.sleep(0.001)
        await csp.Chan[int]().send(1)

    async def on_csp_sleep() -> None:
        await csp.sleep(0.001)
        await never.recv()

    for fn in (on_future, on_sleep, on_csp_sleep):
        csp.go(fn)
    await never.recv()


async def d_after_last_finished() -> None:
    """The last running goroutine finishes (resumed directly) while main is blocked."""
    d = csp.Chan[int]()

    async def w() -> int:
        await d.recv()
        await d.recv()
        return 1

    for _ in range(3):
        csp.go(w)
    for i in range(6):
        await d.send(i)
    await csp.Chan[int]().recv()


async def d_main_on_waitgroup() -> None:
    """Main waits on a WaitGroup whose counter never reaches zero; workers finish."""
    wg = csp.WaitGroup()
    wg.add(3)
    d = csp.Chan[int]()

    async def w() -> None:
        await d.recv()
        wg.done()

    for _ in range(2):
        csp.go(w)
    await d.send(1)
    await d.send(2)
    await wg.wait()


async def d_plain_task_finished() -> None:
    """A plain asyncio task that used csp ends; then only blocked goroutines remain."""
    d = csp.Chan[int]()

    async def plain() -> None:
        await d.recv()
        await asyncio.sleep(0)

    asyncio.get_running_loop().create_task(plain())

    async def w() -> None:
        await d.send(1)
        await csp.select()

    csp.go(w)
    await csp.nil.recv()


async def d_after_cancellations() -> None:
    """Goroutines cancelled while parked (pending, and after a hand-off) keep blocking."""
    d, never = csp.Chan[int](), csp.Chan[int]()

    async def stubborn() -> None:
        try:
            await d.recv()
            await d.recv()
            await never.recv()
        except asyncio.CancelledError:
            await never.recv()

    t1, t2 = csp.go(stubborn), csp.go(stubborn)
    await d.send(1)
    await d.send(2)
    await d.send(3)
    await d.send(4)  # t2's waiter is done, t2 still queued
    t1.cancel()
    t2.cancel()
    await asyncio.sleep(0)
    await never.recv()


async def d_timeout_then_block() -> None:
    """wait_for times out a receive (a plain inner task), then everyone blocks."""
    never = csp.Chan[int]()

    async def w() -> None:
        try:
            await asyncio.wait_for(never.recv(), 0.001)
        except TimeoutError:
            pass
        await never.recv()

    csp.go(w)
    await never.recv()


async def d_mutex() -> None:
    mu = csp.Mutex()
    async with mu:

        async def w() -> None:
            async with mu:
                pass

        csp.go(w)
        await mu.lock()


DEADLOCKS: dict[str, tuple[Prog, str]] = {
    "direct_many_times": (d_direct_many_times, "chan receive"),
    "yields_then_park": (d_yields_then_park, "chan receive"),
    "after_future_and_timer": (d_after_future_and_timer, "chan receive"),
    "after_last_finished": (d_after_last_finished, "chan receive"),
    "main_on_waitgroup": (d_main_on_waitgroup, "sync.WaitGroup.Wait"),
    "plain_task_finished": (d_plain_task_finished, "chan receive (nil chan)"),
    "after_cancellations": (d_after_cancellations, "chan receive"),
    "timeout_then_block": (d_timeout_then_block, "chan receive"),
    "mutex": (d_mutex, "sync.Mutex.Lock"),
}


# -- programs that finish (expected: their result) ----------------------------------


async def f_spinner_ends_it() -> str:
    """Main is blocked in csp; a goroutine spins on sleep(0)/gosched for a while (it is
    in csp's run queue or parked on its proxy the whole time), then releases main."""
    ch = csp.Chan[str]()

    async def spin() -> None:
        await ch.send("warm-up")  # park once: its yields are then resumed by csp
        for _ in range(200):
            await csp.gosched()
        await ch.send("done")

    csp.go(spin)
    assert await ch.recv() == "warm-up"
    return (await ch.recv()) or ""


async def f_timer_ends_it() -> str:
    """Everyone is blocked in csp, but a csp timer will release main."""
    t = csp.after(0.002)
    ch = csp.Chan[str]()

    async def w() -> None:
        await t.recv()
        await ch.send("timer")

    csp.go(w)
    return (await ch.recv()) or ""


FINISHES: dict[str, tuple[Prog, str]] = {
    "spinner_ends_it": (f_spinner_ends_it, "done"),
    "timer_ends_it": (f_timer_ends_it, "timer"),
}


# -- randomized: the same random program, once finishing and once deadlocking -------


def fuzz_program(seed: int, deadlock: bool) -> Prog:
    """Workers (goroutines and plain tasks) run a random mix of channel steps served by
    partner goroutines, yields, Futures, timers, mutexes, selects, cancellations and
    short-lived children; main waits for them. With ``deadlock`` every goroutine ends
    blocked on a channel nobody uses (plain tasks just finish)."""
    rng = random.Random(seed)
    plans = [
        [rng.choice(FUZZ_OPS) for _ in range(rng.randint(0, 25))]
        for _ in range(rng.randint(1, 6))
    ]
    plain = [rng.random() < 0.3 for _ in plans]
    block = [deadlock and not p and rng.random() < 0.7 for p in plain]

    async def main() -> str:
        loop = asyncio.get_running_loop()
        pairs = [csp.Chan[int]() for _ in range(3)]
        mu, wg = csp.Mutex(), csp.WaitGroup()
        never, gate = csp.Chan[int](), csp.Chan[int]()

        async def step(w: int, i: int, op: str) -> None:
            c = pairs[(w + i) % 3]
            if op == "send":
                await c.send(w)
            elif op == "recv":
                await c.recv()
            elif op == "sleep0":
                await asyncio.sleep(0)
            elif op == "gosched":
                await csp.gosched()
            elif op == "future":
                f = loop.create_future()
                loop.call_soon(f.set_result, None)
                await f
            elif op == "asleep":
                await asyncio.sleep(0.0005)
            elif op == "csleep":
                await csp.sleep(0.0005)
            elif op == "mutex":
                async with mu:
                    await asyncio.sleep(0)
            elif op == "select":
                await csp.select(c.recv, (c.send, 1))
            elif op == "wait_for":
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(never.recv(), 0.0005)
            elif op == "cancel_child":
                d = csp.Chan[int]()

                async def kid() -> None:
                    await d.recv()
                    await d.recv()
                    await never.recv()

                t = csp.go(kid)
                await d.send(1)
                await d.send(2)
                await csp.gosched()
                t.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await t
            elif op == "child":
                d = csp.Chan[int](1)

                async def kid2() -> None:
                    await d.send(1)
                    await asyncio.sleep(0)
                    await d.send(2)

                csp.go(kid2)
                await d.recv()

        async def worker(w: int) -> None:
            for i, op in enumerate(plans[w]):
                await step(w, i, op)
            wg.done()
            if block[w]:
                await never.recv()

        async def partner(k: int) -> None:
            c = pairs[k]
            while True:
                i, _ = await csp.select(c.recv, (c.send, -1), gate.recv)
                if i == 2:
                    return

        for k in range(3):
            csp.go(partner, k)
        plain_tasks = set()
        for w in range(len(plans)):
            wg.add(1)
            if plain[w]:
                plain_tasks.add(loop.create_task(worker(w)))
            else:
                csp.go(worker, w)
        await wg.wait()
        for _ in range(3):
            await gate.send(0)
        if deadlock:
            await never.recv()
        return "ok"

    return main


FUZZ_OPS = ["send", "recv", "sleep0", "gosched", "future", "asleep", "csleep", "mutex",
            "select", "wait_for", "cancel_child", "child"]


# -- the child process ----------------------------------------------------------------


class _Hang(BaseException):
    pass


def _alarm(*_: object) -> None:
    raise _Hang


def _outcome(prog: Prog, loop: str) -> str:
    signal.signal(signal.SIGALRM, _alarm)
    csp._deadlock.ignore_signal(signal.SIGALRM)  # (a Python handler forbids a verdict)
    signal.alarm(3)
    try:
        return f"returned {csp.run(prog, loop=loop)!r}"
    except csp.DeadlockError as e:
        return f"deadlock {str(e).splitlines()[2]}"
    except _Hang:
        return "hang"
    finally:
        signal.alarm(0)


def _child(argv: list[str]) -> None:
    kind, loop = argv[0], argv[1]
    if kind == "fixed":
        for name, (prog, _) in {**DEADLOCKS, **FINISHES}.items():
            print(name, _outcome(prog, loop), flush=True)
    else:
        first, n = int(argv[2]), int(argv[3])
        for seed in range(first, first + n):
            for dl in (False, True):
                print(seed, dl, _outcome(fuzz_program(seed, dl), loop), flush=True)


def _in_child(*args: str) -> list[str]:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.path.join(ROOT, "tests"))
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), *args],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.splitlines()


def test_deadlocks_reported_and_finishing_programs_finish(loop_name: str) -> None:
    """Each deadlocking program raises DeadlockError naming main's blocked operation;
    each finishing program returns its value (no false DeadlockError, no hang)."""
    got = _in_child("fixed", loop_name)
    expected = [
        f"{name} deadlock goroutine 1 [{reason}]:" for name, (_, reason) in DEADLOCKS.items()
    ] + [f"{name} returned {value!r}" for name, (_, value) in FINISHES.items()]
    assert got == expected


def _fuzz_expected(first: int, n: int) -> list[str]:
    out = []
    for seed in range(first, first + n):
        out.append(f"{seed} False returned 'ok'")
        out.append(f"{seed} True deadlock goroutine 1 [chan receive]:")
    return out


def test_random_programs_deadlock_exactly_when_they_end_blocked(loop_name: str) -> None:
    """Seeded: the same random program returns 'ok' when it does not end blocked and
    raises DeadlockError (main blocked on 'chan receive') when it does. A few seeds
    here; many in the slow run."""
    assert _in_child("fuzz", loop_name, "7000", "6") == _fuzz_expected(7000, 6)


@pytest.mark.slow
def test_random_programs_deadlock_exactly_when_they_end_blocked_many_seeds(
        loop_name: str) -> None:
    """The same, 150 seeds."""
    assert _in_child("fuzz", loop_name, "7000", "150") == _fuzz_expected(7000, 150)


if __name__ == "__main__":
    _child(sys.argv[1:])


def test_watch_look_again_never_counts_as_a_pending_timer() -> None:
    """The deadlock watch looks again when the next timer fires; a new look replaces
    that pending look (cancels it), so it never counts as a pending timer itself.
    (It did: after Ctrl-C, csp.run's exit waited for the hour-long sleep main had been
    cancelled in, because the look scheduled for it kept "a timer" pending.)"""
    from csp import _deadlock, _sched

    loop = _deadlock.AsyncioLoop()
    try:
        watch = _deadlock.Watch(loop, _sched.Scheduler(loop), lambda state: None)
        loop.call_later(3600, lambda: None).cancel()  # a stopped timer ...
        h = loop.call_later(3600, lambda: None)  # ... and a pending one
        watch._recheck_after_timers()
        first = watch.recheck
        assert first is not None and not first.cancelled()
        h.cancel()
        watch.look()
        assert first.cancelled() and watch.recheck is None
        assert loop._csp_busy(watch.handle) is None  # nothing pending but the look
        watch.stop()
    finally:
        loop.close()


# -- what may still call into the loop: signals, threads, live I/O -------------------
#
# Each "no deadlock" test parks main on a channel that something outside the tasks
# will complete, and does it only once the watch has looked at the parked program
# (rescue.after_a_look): a wrong verdict shows as DeadlockError, a right one as the
# value main receives.


def test_signal_handler_may_still_run_so_no_deadlock(loop_name: str) -> None:
    """Invariant: a handler installed with ``loop.add_signal_handler`` may still run
    (on the asyncio loop it shares the self-pipe, so the selector shows nothing): main
    parked on the channel it closes is not a deadlock; the signal releases it."""
    async def main() -> tuple[object, bool]:
        loop = asyncio.get_running_loop()
        stop = csp.Chan[None]()
        loop.add_signal_handler(signal.SIGUSR1, stop.close)
        t = after_a_look(lambda: os.kill(os.getpid(), signal.SIGUSR1))
        try:
            return await stop.recv_ok()
        finally:
            t.join()
            loop.remove_signal_handler(signal.SIGUSR1)

    assert csp.run(main, loop=loop_name) == (None, False)


def test_removed_signal_handler_no_longer_counts(loop_name: str) -> None:
    """Invariant: what counts is what is live: once the handler is removed, main
    parked forever is reported (uvloop: no more 'I/O was used once')."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, lambda: None)
        loop.remove_signal_handler(signal.SIGUSR1)
        await csp.Chan[int]().recv()

    with pytest.raises(csp.DeadlockError, match="goroutine 1 \\[chan receive\\]"):
        csp.run(main, loop=loop_name)


def _released_by_thread(how: str) -> Prog:
    """main parks on a channel that a thread, started before and waiting for a look,
    completes through the loop: ``how`` is the way the thread calls in."""
    async def main() -> object:
        loop = asyncio.get_running_loop()
        ch = csp.Chan[str]()
        go_on = threading.Event()

        async def close_it() -> None:
            ch.close()

        def thread_body() -> None:
            go_on.wait(10)
            if how == "run_coroutine_threadsafe":
                asyncio.run_coroutine_threadsafe(close_it(), loop)  # (run may end first)
            else:  # call_soon_threadsafe, from a thread or a threading.Timer
                loop.call_soon_threadsafe(ch.close)

        threads = []
        if how == "executor callback":
            pool = concurrent.futures.ThreadPoolExecutor(1)
            job = pool.submit(go_on.wait, 10)
            job.add_done_callback(lambda _: loop.call_soon_threadsafe(ch.close))
        elif how == "threading.Timer":
            timer = threading.Timer(0, thread_body)
            timer.start()
            threads.append(timer)
        else:
            th = threading.Thread(target=thread_body)
            th.start()
            threads.append(th)
        look = after_a_look(go_on.set)
        try:
            return await ch.recv_ok()
        finally:
            look.join()
            for th in threads:
                th.join()
            if how == "executor callback":
                pool.shutdown()

    return main


@pytest.mark.parametrize("how", ["call_soon_threadsafe", "run_coroutine_threadsafe",
                                 "executor callback", "threading.Timer"])
def test_thread_that_may_call_in_forbids_a_verdict(loop_name: str, how: str) -> None:
    """Invariant (API.md DeadlockError): never a false positive while another thread
    may still call into the loop (call_soon_threadsafe, run_coroutine_threadsafe, a
    concurrent.futures job's callback, a threading.Timer): main parked on the channel
    the thread closes is not reported; the thread's call releases it."""
    assert csp.run(_released_by_thread(how), loop=loop_name) == (None, False)


def test_idle_pool_workers_and_ended_threads_allow_a_verdict(loop_name: str) -> None:
    """Invariant: a pool worker waiting for a job, or a thread that has ended, cannot
    call in: with them alive (the default executor's worker, a pool of 2) or gone, a
    program parked forever is reported."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, lambda: 7) == 7
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            assert [f.result() for f in [pool.submit(abs, -1), pool.submit(abs, -2)]] == [1, 2]
            th = threading.Thread(target=lambda: None)
            th.start()
            th.join()
            await csp.Chan[int]().recv()

    with pytest.raises(csp.DeadlockError, match="goroutine 1 \\[chan receive\\]"):
        csp.run(main, loop=loop_name)


def test_io_that_has_ended_no_longer_counts(loop_name: str) -> None:
    """Invariant (uvloop, issue 13): detection follows what I/O is live, not what was
    ever opened: after a getaddrinfo, a connection opened and closed to a server that
    was then closed, and a subprocess that has exited, a program parked forever is
    reported (on uvloop this used to switch detection off for good)."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.getaddrinfo("127.0.0.1", 80)

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(await r.readline())
            await w.drain()
            w.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping\n")
        assert await reader.readline() == b"ping\n"
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "print('hi')", stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        assert out == b"hi\n"
        await csp.Chan[int]().recv()

    with pytest.raises(csp.DeadlockError, match="goroutine 1 \\[chan receive\\]"):
        csp.run(main, loop=loop_name)


def test_connection_a_closed_server_accepted_still_counts(loop_name: str) -> None:
    """Invariant: a connection a server accepted stays live after the server is
    closed (uvloop shows neither: csp follows the protocols the server made): main
    parked on the channel the connection's protocol feeds is not a deadlock; the
    client's bytes release it."""
    async def main() -> bytes | None:
        loop = asyncio.get_running_loop()
        got = csp.Chan[bytes]()
        accepted = asyncio.Event()

        class Feed(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                accepted.set()

            def data_received(self, data: bytes) -> None:
                got.send_nowait(data)  # main is parked on got

        server = await loop.create_server(Feed, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        await accepted.wait()
        server.close()  # (3.12+: wait_closed() would wait for the connection too)
        look = after_a_look(lambda: client.sendall(b"late"))
        try:
            return await got.recv()
        finally:
            look.join()
            client.close()

    assert csp.run(main, loop=loop_name) == b"late"


# -- main awaiting stuck goroutines ---------------------------------------------------


@pytest.mark.parametrize("how", ["await task", "gather", "wait", "wait_for", "shield",
                                 "two levels"])
def test_main_awaiting_deadlocked_goroutine_tasks_is_a_deadlock(loop_name: str,
                                                               how: str) -> None:
    """Invariant (API.md DeadlockError): main awaiting goroutine Tasks that are
    themselves deadlocked (``await csp.go(f)``, ``asyncio.gather`` / ``wait`` /
    ``wait_for(None)`` / ``shield`` over them, or a goroutine that awaits one) is a
    deadlock, reported with main in it."""
    async def main() -> None:
        never = csp.Chan[int]()
        a = csp.go(never.recv)
        b = csp.go(never.recv)
        if how == "await task":
            await a
        elif how == "gather":
            await asyncio.gather(a, b)
        elif how == "wait":
            await asyncio.wait([a, b])
        elif how == "wait_for":
            await asyncio.wait_for(a, None)
        elif how == "shield":
            await asyncio.shield(a)
        else:
            async def middle() -> None:
                await asyncio.gather(a, b)

            await csp.go(middle)

    with pytest.raises(csp.DeadlockError) as ei:
        csp.run(main, loop=loop_name)
    msg = str(ei.value)
    assert "goroutine 1 [IO wait]:" in msg
    assert "goroutine 2 [chan receive]:" in msg
    assert msg.count("goroutine ") >= 3


@pytest.mark.parametrize("by", ["thread", "timer"])
def test_main_awaiting_a_goroutine_that_can_finish_is_no_deadlock(loop_name: str,
                                                                  by: str) -> None:
    """Invariant: the rule above never fires while an awaited goroutine can still go
    on: main awaits a goroutine parked on a channel that a thread (after a look)
    fills, or one asleep on a csp timer; the gather returns its value."""
    async def sleeper() -> int:
        await csp.sleep(0.01)
        return 5

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        ch = csp.Chan[int](1)
        if by == "timer":
            return await asyncio.gather(csp.go(sleeper))
        t = csp.go(ch.recv)
        go_on = threading.Event()

        def feeder() -> None:  # a thread that may call in: no verdict while it lives
            go_on.wait(10)
            loop.call_soon_threadsafe(ch.send_nowait, 5)

        th = threading.Thread(target=feeder)
        th.start()
        look = after_a_look(go_on.set)
        try:
            return await asyncio.gather(t)  # type: ignore[arg-type]
        finally:
            look.join()
            th.join()

    assert csp.run(main, loop=loop_name) == [5]


def test_closed_transport_still_sending_its_buffer_counts(loop_name: str) -> None:
    """Invariant: a transport closed with data still buffered keeps sending, and its
    protocol's ``connection_lost`` runs once the peer has drained it: live until then
    (uvloop: csp follows the protocol, not ``is_closing()``). The peer (a plain socket
    of this test) reads only after a look."""
    async def main() -> str:
        loop = asyncio.get_running_loop()
        lost = csp.Chan[str]()
        listener = socket.create_server(("127.0.0.1", 0))

        class P(asyncio.Protocol):
            def connection_lost(self, exc: BaseException | None) -> None:
                lost.send_nowait("flushed and lost")  # main is parked on lost

        tr, _ = await loop.create_connection(P, *listener.getsockname()[:2])
        peer, _ = listener.accept()
        tr.write(b"x" * (16 << 20))  # far more than the socket buffers hold
        tr.close()

        def drain() -> None:
            while peer.recv(1 << 20):
                pass

        look = after_a_look(drain)
        try:
            return await lost.recv() or ""
        finally:
            look.join()
            peer.close()
            listener.close()

    assert csp.run(main, loop=loop_name) == "flushed and lost"


def test_job_queued_on_an_idle_pool_worker_forbids_a_verdict(loop_name: str) -> None:
    """Invariant: a pool worker is idle only while its queue is empty: a job submitted
    with ``pool.submit`` (not through the loop) that the worker has not taken yet may
    call in. 200 times: submit a job that closes the channel main then waits on."""
    async def main() -> int:
        loop = asyncio.get_running_loop()
        n = 0
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(abs, 0).result()  # the worker exists and waits for a job
            for _ in range(200):
                c = csp.Chan[int]()
                pool.submit(loop.call_soon_threadsafe, c.close)
                if (await c.recv_ok()) == (None, False):
                    n += 1
        return n

    assert csp.run(main, loop=loop_name) == 200


def test_thread_started_without_threading_forbids_a_verdict(loop_name: str) -> None:
    """Invariant: every thread with a Python thread state counts, also one started
    with ``_thread.start_new_thread`` (``threading.enumerate()`` does not list it)."""
    import _thread

    async def main() -> object:
        loop = asyncio.get_running_loop()
        c = csp.Chan[int]()
        go_on = threading.Event()
        ended = threading.Event()

        def raw() -> None:
            go_on.wait(10)
            loop.call_soon_threadsafe(c.close)
            ended.set()

        _thread.start_new_thread(raw, ())
        look = after_a_look(go_on.set)
        try:
            return await c.recv_ok()
        finally:
            look.join()
            ended.wait(10)

    assert csp.run(main, loop=loop_name) == (None, False)


def test_python_signal_handler_forbids_a_verdict(loop_name: str) -> None:
    """Invariant: a handler installed with ``signal.signal`` may still run and call in
    (Go: ``signal.Notify`` keeps the program alive): no verdict while it is installed;
    the signal, sent after a look, releases main. (asyncio.Runner's own SIGINT handler
    does not count.)"""
    async def main() -> object:
        loop = asyncio.get_running_loop()
        c = csp.Chan[int]()
        prev = signal.signal(signal.SIGUSR2,
                             lambda *_: loop.call_soon_threadsafe(c.close))
        look = after_a_look(lambda: os.kill(os.getpid(), signal.SIGUSR2))
        try:
            return await c.recv_ok()
        finally:
            look.join()
            signal.signal(signal.SIGUSR2, prev)

    assert csp.run(main, loop=loop_name) == (None, False)


@pytest.mark.parametrize("how", ["main and a goroutine", "two goroutines"])
def test_tasks_awaiting_each_other_are_a_deadlock(loop_name: str, how: str) -> None:
    """Invariant: goroutines that await each other's Tasks in a cycle, with nobody
    parked in csp, are stuck (Go reports the channel cycle): DeadlockError, not a
    hang."""
    async def main() -> None:
        me = asyncio.current_task()
        assert me is not None
        if how == "main and a goroutine":
            async def g() -> None:
                await me

            await csp.go(g)
        else:
            box: dict[str, asyncio.Task[None]] = {}

            async def a() -> None:
                await csp.gosched()
                await box["b"]

            async def b() -> None:
                await csp.gosched()
                await box["a"]

            box["a"], box["b"] = csp.go(a), csp.go(b)
            await box["a"]

    # (Task.cancel() cannot stop them: it passes the request round the cycle for ever,
    # so they are abandoned at exit, with the warning)
    with pytest.raises(csp.DeadlockError) as ei, pytest.warns(
            RuntimeWarning, match=r"abandoned .* \[awaiting a stuck task\]"):
        csp.run(main, loop=loop_name)
    assert "goroutine 1 [IO wait]:" in str(ei.value)


def test_exit_abandons_finally_blocks_awaiting_each_other(
        loop_name: str, recwarn: pytest.WarningsRecorder) -> None:
    """Invariant (csp.run never hangs): after main returns, two goroutines whose
    ``finally`` blocks await each other's Task are abandoned, with the warning, and
    run returns main's value."""
    async def main() -> str:
        box: dict[str, asyncio.Task[None]] = {}
        never = csp.Chan[int]()

        async def a() -> None:
            try:
                await never.recv()
            finally:
                await box["b"]

        async def b() -> None:
            try:
                await never.recv()
            finally:
                await box["a"]

        box["a"], box["b"] = csp.go(a), csp.go(b)
        await csp.gosched()
        return "main's value"

    assert csp.run(main, loop=loop_name) == "main's value"
    msgs = [str(w.message) for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 1 and msgs[0].startswith("csp.run: abandoned 2 goroutines"), msgs


@pytest.mark.skipif(uvloop_missing(), reason="uvloop's own account of live I/O")
def test_uvloop_forgets_closed_connections_whatever_else_is_live() -> None:
    """Invariant: a transport leaves the live-I/O account when its connection is lost,
    also while something else keeps I/O live (a signal handler): 50 connections to a
    server, each closed, leave no transport behind (they used to be kept for good)."""
    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, lambda: None)

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await r.read()
            w.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        for _ in range(50):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write_eof()
            await r.read()
            w.close()
            await w.wait_closed()
        for _ in range(20):  # the server side's connection_lost runs a callback later
            await asyncio.sleep(0)
        server.close()
        io = loop._csp_live_io  # type: ignore[attr-defined]
        assert io.live() == "signal handlers"  # (and the closed server is pruned)
        loop.remove_signal_handler(signal.SIGUSR1)
        return len(io.transports), len(io.others)

    assert csp.run(main, loop="uvloop") == (0, 0)


def test_the_report_says_how_long_past_a_minute() -> None:
    """Go: ``goroutine 2 [chan receive, 2 minutes]:``: since csp first saw it blocked
    there (here: the watch's look when main parked in its 150 s sleep), in virtual time."""
    async def main() -> None:
        ch = csp.Chan[int]()
        csp.go(ch.recv)
        await csp.sleep(150)
        await csp.Chan[int]().recv()

    with pytest.raises(csp.DeadlockError) as ei:
        csp.testing.run(main)
    lines = str(ei.value).splitlines()
    assert "goroutine 1 [chan receive]:" in lines  # blocked there just now
    assert "goroutine 2 [chan receive, 2 minutes]:" in lines
