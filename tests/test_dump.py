"""csp/_dump.py: goroutine reports in Go's dump format (the DeadlockError report).

Invariants: each goroutine shows ``goroutine N [STATE]:``, its stack innermost call
first as ``fn(...)`` / ``\\tfile:line`` lines with csp's own calls folded into the one
public call the program made (``csp.Chan.recv``), and ``created by FN in goroutine M``
with the file and line of the ``go`` call (of ``wg.go`` / ``g.go`` for goroutines csp
starts for the program); goroutines whose report would be identical are grouped, the
first in full and the others counted; ids in order, main first.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import csp
import csp.testing

HERE = __file__
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _line(marker: str) -> int:
    """The line of this file that ends with ``# <marker>``."""
    with open(HERE) as f:
        for n, text in enumerate(f, 1):
            if text.rstrip().endswith(f"# {marker}"):
                return n
    raise AssertionError(marker)


def report(run: Any, main: Any) -> list[str]:
    with pytest.raises(csp.DeadlockError) as ei:
        run(main)
    return str(ei.value).splitlines()


def block(lines: list[str], gid: int) -> list[str]:
    """The lines of goroutine ``gid``'s entry (up to the blank line)."""
    start = lines.index(next(ln for ln in lines if ln.startswith(f"goroutine {gid} [")))
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return lines[start:end]


def heads(text: str) -> list[str]:
    """The ``goroutine N [STATE]:`` lines of a dump."""
    return [ln for ln in text.splitlines() if ln.startswith("goroutine ")]


def name(fn: Any) -> str:
    return str(fn.__qualname__).replace(".<locals>", "")


def test_report_shows_stack_innermost_first_and_where_each_was_created(run: Any) -> None:
    """Go's format: the public csp call, then the program's frames inward-out, then
    ``created by`` the function and line of the ``go`` call, with its goroutine."""
    async def worker(ch: csp.Chan[int]) -> None:
        await inner(ch)  # worker-await

    async def inner(ch: csp.Chan[int]) -> None:
        await ch.send(1)  # inner-send

    async def main() -> None:
        ch = csp.Chan[int]()
        csp.go(worker, ch)  # go-worker
        await csp.Chan[int]().recv()  # main-recv

    lines = report(run, main)
    assert lines[:2] == ["all goroutines are asleep - deadlock!", ""]
    assert block(lines, 1) == [
        "goroutine 1 [chan receive]:",
        "csp.Chan.recv(...)",
        lines[4],
        f"{main.__qualname__.replace('.<locals>', '')}(...)",
        f"\t{HERE}:{_line('main-recv')}",
    ]
    assert lines[4].startswith("\t") and "csp" in lines[4]
    g2 = block(lines, 2)
    assert g2[0] == "goroutine 2 [chan send]:"
    assert g2[1] == "csp.Chan.send(...)"
    assert g2[3:] == [
        f"{inner.__qualname__.replace('.<locals>', '')}(...)",
        f"\t{HERE}:{_line('inner-send')}",
        f"{worker.__qualname__.replace('.<locals>', '')}(...)",
        f"\t{HERE}:{_line('worker-await')}",
        f"created by {main.__qualname__.replace('.<locals>', '')} in goroutine 1",
        f"\t{HERE}:{_line('go-worker')}",
    ]


def test_goroutine_started_on_a_csp_method_names_it_and_its_creator(run: Any) -> None:
    """``go(mu.lock)``: no frame of the program's own; the report names the csp call
    (not a csp-internal line only) and the program line that started it."""
    async def main() -> None:
        mu = csp.Mutex()
        await mu.lock()
        csp.go(mu.lock)  # go-lock
        await csp.Chan[int]().recv()

    g2 = block(report(run, main), 2)
    assert g2[0] == "goroutine 2 [sync.Mutex.Lock]:"
    assert g2[1] == "csp.Mutex.lock(...)"
    assert g2[3:] == [f"created by {main.__qualname__.replace('.<locals>', '')} in goroutine 1",
                      f"\t{HERE}:{_line('go-lock')}"]


def test_goroutines_csp_starts_are_created_by_the_program_line(run: Any) -> None:
    """``wg.go(f)`` and ``ErrGroup.go(f)`` start goroutines from inside csp: each is
    created by the program's call, and csp's wrapper frame is not in its stack; a
    goroutine started by another names that goroutine."""
    async def stuck() -> None:
        await csp.Chan[int]().recv()

    async def spawner() -> None:
        csp.go(stuck)  # go-nested
        await csp.Chan[int]().recv()

    async def main() -> None:
        wg = csp.WaitGroup()
        wg.go(stuck)  # wg-go
        g = csp.ErrGroup()
        g.go(stuck)  # errgroup-go
        csp.go(spawner)
        await wg.wait()

    lines = report(run, main)
    me = main.__qualname__.replace(".<locals>", "")
    assert block(lines, 2)[-2:] == [f"created by {me} in goroutine 1", f"\t{HERE}:{_line('wg-go')}"]
    assert f"\t{HERE}:{_line('errgroup-go')}" in lines
    assert not any("_run(...)" in ln for ln in lines)
    assert f"created by {spawner.__qualname__.replace('.<locals>', '')} in goroutine 4" in lines
    assert f"\t{HERE}:{_line('go-nested')}" in lines


def test_identical_goroutines_are_grouped(run: Any) -> None:
    """10,000 workers parked on one line make one entry and a count (Go tools group
    identical stacks); a different line or state is its own entry; the report stays
    small."""
    async def w(ch: csp.Chan[int]) -> None:
        await ch.send(1)

    async def main() -> None:
        ch = csp.Chan[int]()
        for _ in range(10_000):
            csp.go(w, ch)
        csp.go(ch.recv_ok)  # (a receive on an unbuffered channel with senders: no)
        await csp.Chan[int]().recv()

    # the extra receiver takes one value: 9,999 senders stay parked
    lines = report(run, main)
    heads = [ln for ln in lines if ln.startswith("goroutine ")]
    assert heads == ["goroutine 1 [chan receive]:", "goroutine 3 [chan send]:"]
    assert ("... and 9,998 more goroutines blocked at the same place "
            "(goroutine 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, ...)") in lines
    assert len("\n".join(lines)) < 2_000


def test_a_lone_duplicate_is_named_in_the_singular(run: Any) -> None:
    async def main() -> None:
        never = csp.Chan[int]()
        for _ in range(2):
            csp.go(never.recv)
        await csp.Chan[int]().recv()

    lines = report(run, main)
    assert "... and 1 more goroutine blocked at the same place (goroutine 3)" in lines


@pytest.mark.slow
def test_many_identical_goroutines_make_a_short_report() -> None:
    """2 x 10^5 parked goroutines: the report is a few lines (at 10^6 it was 71 MiB;
    the closing note of issue 13 has the 10^6 timing)."""
    async def main() -> None:
        never = csp.Chan[int]()
        for _ in range(200_000):
            csp.go(never.recv)
        await never.send(0)  # one receiver takes it; main then blocks on the next
        await never.send(0)
        await csp.Chan[int]().recv()

    with pytest.raises(csp.DeadlockError) as ei:
        csp.run(main, loop="uvloop" if "uvloop" in sys.modules else "asyncio")
    msg = str(ei.value)
    assert "... and 199,997 more goroutines blocked at the same place" in msg
    assert len(msg) < 2_000


def test_goroutines_of_different_creators_are_not_grouped(run: Any) -> None:
    """The group key includes the creating goroutine: a worker started by goroutine 2
    and one started by goroutine 3 (same line) are two entries, each naming its own
    creator; two ``go`` calls on one line with the same creator are one group."""
    async def stuck() -> None:
        await csp.Chan[int]().recv()

    async def spawner() -> None:
        csp.go(stuck)
        await csp.Chan[int]().recv()

    async def main() -> None:
        csp.go(spawner)
        csp.go(spawner)
        await csp.gosched()
        csp.go(stuck), csp.go(stuck)  # two-on-a-line
        await csp.Chan[int]().recv()

    lines = report(run, main)
    sp = spawner.__qualname__.replace(".<locals>", "")
    assert f"created by {sp} in goroutine 2" in lines
    assert f"created by {sp} in goroutine 3" in lines
    at = lines.index(f"\t{HERE}:{_line('two-on-a-line')}")
    assert lines[at + 1].startswith("... and 1 more goroutine blocked at the same place")


# csp.dump(): the live dump (csp/_runtime.py dump, csp/_deadlock.py goroutine_entries)


def test_dump_shows_each_state_with_main_first(run: Any) -> None:
    """Every state a goroutine can be in, one goroutine each, in id order after main
    (``running``: the caller); each is created by main on the line of its ``go``."""
    async def io_wait() -> None:
        await asyncio.sleep(3600)

    async def main() -> str:
        mu = csp.Mutex()
        await mu.lock()
        wg = csp.WaitGroup()
        wg.add(1)
        sem = csp.Semaphore(1)
        await sem.acquire()
        csp.go(csp.Chan[int]().recv)  # d-recv
        csp.go(csp.Chan[int]().send, 1)  # d-send
        csp.go(csp.select, csp.Chan[int]().recv, (csp.Chan[int]().send, 1))  # d-select
        csp.go(csp.select)  # d-select0
        csp.go(csp.nil.recv)  # d-nil
        csp.go(mu.lock)  # d-mutex
        csp.go(wg.wait)  # d-wg
        csp.go(sem.acquire)  # d-sem
        csp.go(csp.sleep, 3600)  # d-sleep
        csp.go(io_wait)  # d-io
        await csp.gosched()
        csp.go(io_wait)  # d-runnable
        out = csp.dump()  # d-dump
        wg.done()
        mu.unlock()
        sem.release()
        return out

    out = run(main)
    assert out.endswith("\n")
    lines = out.splitlines()
    expected: list[tuple[str, str | None, str]] = [
        ("running", None, "d-dump"),
        ("chan receive", "csp.Chan.recv", "d-recv"),
        ("chan send", "csp.Chan.send", "d-send"),
        ("select", "csp.select", "d-select"),
        ("select (no cases)", "csp.select", "d-select0"),
        ("chan receive (nil chan)", "csp.Chan.recv", "d-nil"),
        ("sync.Mutex.Lock", "csp.Mutex.lock", "d-mutex"),
        ("sync.WaitGroup.Wait", "csp.WaitGroup.wait", "d-wg"),
        ("semaphore.Weighted.Acquire", "csp.Semaphore.acquire", "d-sem"),
        ("sleep", "csp.sleep", "d-sleep"),
        ("IO wait", None, "d-io"),
        ("runnable", None, "d-runnable"),
    ]
    assert heads(out) == [f"goroutine {i} [{state}]:"
                          for i, (state, _, _) in enumerate(expected, 1)]
    assert block(lines, 1) == ["goroutine 1 [running]:", f"{name(main)}(...)",
                               f"\t{HERE}:{_line('d-dump')}"]
    for gid, (_, call, marker) in enumerate(expected[1:], 2):
        b = block(lines, gid)
        assert b[-2:] == [f"created by {name(main)} in goroutine 1",
                          f"\t{HERE}:{_line(marker)}"], b
        if call is not None:  # parked in csp: the public call, at a line of csp's
            assert b[1] == f"{call}(...)", b
            assert b[2].startswith("\t" + os.path.dirname(csp.__file__) + os.sep), b
            assert len(b) == 5, b
    io = block(lines, 11)  # asyncio's sleep, then the goroutine's own frame
    assert io[1] == "sleep(...)" and io[2].startswith("\t") and "asyncio" in io[2]
    assert io[3:5] == [f"{name(io_wait)}(...)", f"\t{HERE}:{io_wait.__code__.co_firstlineno + 1}"]
    # not yet started: its function, at its first line, and where it was created
    assert block(lines, 12)[1:3] == [f"{name(io_wait)}(...)",
                                     f"\t{HERE}:{io_wait.__code__.co_firstlineno}"]


def test_dump_of_goroutines_a_goroutine_started(run: Any) -> None:
    """``created by`` names the creating goroutine and its id; the program's frames
    are listed innermost first under the csp call."""
    async def leaf(ch: csp.Chan[int]) -> None:
        await ch.recv()  # n-leaf-recv

    async def spawner() -> None:
        ch = csp.Chan[int]()
        csp.go(leaf, ch)  # n-go-leaf
        await ch.send(1)  # (a leaf takes it: the next one parks)
        csp.go(leaf, ch)  # n-go-leaf2
        await csp.Chan[int]().recv()

    async def main() -> str:
        csp.go(spawner)
        for _ in range(5):
            await csp.gosched()
        return csp.dump()

    lines = run(main).splitlines()
    assert heads("\n".join(lines)) == ["goroutine 1 [running]:", "goroutine 2 [chan receive]:",
                                       "goroutine 4 [chan receive]:"]
    assert block(lines, 4)[3:] == [f"{name(leaf)}(...)", f"\t{HERE}:{_line('n-leaf-recv')}",
                                   f"created by {name(spawner)} in goroutine 2",
                                   f"\t{HERE}:{_line('n-go-leaf2')}"]


def test_dump_groups_identical_goroutines(run: Any) -> None:
    async def main() -> str:
        never = csp.Chan[int]()
        for _ in range(4):
            csp.go(never.recv)  # g-four
        await csp.gosched()
        return csp.dump()

    lines = run(main).splitlines()
    assert heads("\n".join(lines)) == ["goroutine 1 [running]:", "goroutine 2 [chan receive]:"]
    assert lines[-3:] == [f"created by {name(main)} in goroutine 1",
                          f"\t{HERE}:{_line('g-four')}",
                          "... and 3 more goroutines blocked at the same place (goroutine 3, 4, 5)"]


def test_dump_outside_a_loop_or_of_a_loop_csp_never_used() -> None:
    with pytest.raises(RuntimeError, match="pass the loop"):
        csp.dump()
    with pytest.raises(TypeError):
        csp.dump(42)  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()
    try:
        assert csp.dump(loop) == ""
    finally:
        loop.close()


def test_dump_from_another_thread(run: Any) -> None:
    """``csp.dump(loop)`` from a thread while the loop runs: nothing is ``running``
    (the caller is no goroutine), main awaits a future (``IO wait``), the goroutine is
    parked; the thread then wakes main."""
    async def main() -> str:
        loop = asyncio.get_running_loop()
        csp.go(csp.Chan[int]().recv)  # t-go
        await csp.gosched()
        parked = threading.Event()
        woke: asyncio.Future[str] = loop.create_future()

        def look() -> None:
            parked.wait()
            try:
                text = csp.dump(loop)
            except BaseException as e:  # (reported in main)
                loop.call_soon_threadsafe(woke.set_exception, e)
            else:
                loop.call_soon_threadsafe(woke.set_result, text)

        th = threading.Thread(target=look)
        th.start()
        loop.call_soon(parked.set)  # (runs once main is parked on woke)
        out = await woke  # t-await
        th.join()
        return out

    lines = run(main).splitlines()
    assert heads("\n".join(lines)) == ["goroutine 1 [IO wait]:", "goroutine 2 [chan receive]:"]
    assert f"\t{HERE}:{_line('t-await')}" in block(lines, 1)
    assert block(lines, 2)[-2:] == [f"created by {name(main)} in goroutine 1",
                                    f"\t{HERE}:{_line('t-go')}"]


def test_dump_without_a_loop_from_another_thread_is_an_error(run: Any) -> None:
    async def main() -> None:
        errors: list[BaseException] = []

        def look() -> None:
            try:
                csp.dump()
            except RuntimeError as e:
                errors.append(e)

        th = threading.Thread(target=look)
        th.start()
        th.join()
        assert len(errors) == 1 and "pass the loop" in str(errors[0])

    run(main)


# minutes: since csp first saw a goroutine in its state (Go's waitsince), virtual time


def test_dump_minutes_in_virtual_time() -> None:
    """No minutes under 60 s, ``1 minutes`` (Go's plural) from 60 s to 119 s, then
    ``2 minutes``; counted from the first dump that saw the goroutine there."""
    async def main() -> list[str]:
        csp.go(csp.Chan[int]().recv)
        await csp.gosched()
        seen = []
        for wait in (0, 59, 1, 59, 31):  # t = 0, 59, 60, 119, 150
            await csp.sleep(wait)
            seen.append(heads(csp.dump())[1])
        return seen

    assert csp.testing.run(main) == [
        "goroutine 2 [chan receive]:",
        "goroutine 2 [chan receive]:",
        "goroutine 2 [chan receive, 1 minutes]:",
        "goroutine 2 [chan receive, 1 minutes]:",
        "goroutine 2 [chan receive, 2 minutes]:",
    ]


def test_dump_minutes_count_from_the_first_sighting() -> None:
    """Minutes count from when csp first saw the goroutine blocked there: here the
    deadlock watch's look at t=0, when main's sleep left everyone waiting (Go's
    waitsince is likewise set when the runtime first sees it blocked). Outside csp.run
    (no watch), from the first dump: parked since t=0, dumped at t=100 and t=160."""
    async def main() -> list[str]:
        csp.go(csp.Chan[int]().recv)
        await csp.sleep(100)
        first = heads(csp.dump())[1]
        await csp.sleep(60)
        return [first, heads(csp.dump())[1]]

    assert csp.testing.run(main) == ["goroutine 2 [chan receive, 1 minutes]:",
                                     "goroutine 2 [chan receive, 2 minutes]:"]

    from csp._vtime import VirtualTimeLoop

    async def plain() -> list[str]:
        ch = csp.Chan[int]()
        csp.go(ch.recv)
        await asyncio.sleep(100)
        first = csp.dump().splitlines()[0]
        await asyncio.sleep(60)
        out = [first, csp.dump().splitlines()[0]]
        ch.close()
        await asyncio.sleep(0)
        return out

    loop = VirtualTimeLoop()
    try:
        assert loop.run_until_complete(plain()) == [
            "goroutine 2 [chan receive]:", "goroutine 2 [chan receive, 1 minutes]:"]
    finally:
        loop.close()


def test_dump_minutes_restart_on_another_waiter() -> None:
    """A goroutine that moves on to another wait (even one of the same kind) starts
    counting again; a ``running`` or ``runnable`` goroutine never shows minutes."""
    async def worker(a: csp.Chan[int], b: csp.Chan[int]) -> None:
        await a.recv()
        await b.recv()
        await csp.select(a.recv, b.recv)

    async def main() -> list[str]:
        a, b = csp.Chan[int](), csp.Chan[int]()
        csp.go(worker, a, b)
        await csp.gosched()
        seen = [csp.dump()]
        await csp.sleep(150)
        seen.append(csp.dump())
        await a.send(1)  # now on b
        await csp.gosched()
        seen.append(csp.dump())
        await csp.sleep(61)
        seen.append(csp.dump())
        await b.send(2)  # now in the select
        await csp.gosched()
        seen.append(csp.dump())
        await csp.sleep(120)
        seen.append(csp.dump())
        return [" ".join(heads(d)) for d in seen]

    assert csp.testing.run(main) == [
        "goroutine 1 [running]: goroutine 2 [chan receive]:",
        "goroutine 1 [running]: goroutine 2 [chan receive, 2 minutes]:",
        "goroutine 1 [running]: goroutine 2 [chan receive]:",
        "goroutine 1 [running]: goroutine 2 [chan receive, 1 minutes]:",
        "goroutine 1 [running]: goroutine 2 [select]:",
        "goroutine 1 [running]: goroutine 2 [select, 2 minutes]:",
    ]


def test_dump_minutes_restart_for_a_runnable_goroutine() -> None:
    """Woken and parked again on the same channel between two dumps: a new wait, so
    no minutes (the dump did not see it there before)."""
    async def worker(a: csp.Chan[int]) -> None:
        while True:
            await a.recv()  # m-loop

    async def main() -> list[str]:
        a = csp.Chan[int]()
        csp.go(worker, a)
        await csp.gosched()
        csp.dump()
        await csp.sleep(90)
        await a.send(1)
        await csp.gosched()
        first = heads(csp.dump())[1]
        await csp.sleep(90)
        return [first, heads(csp.dump())[1]]

    assert csp.testing.run(main) == ["goroutine 2 [chan receive]:",
                                     "goroutine 2 [chan receive, 1 minutes]:"]


def test_dump_does_not_group_goroutines_of_different_minutes() -> None:
    """Same place, same creator, but one has waited 2 minutes and the other not: two
    entries (the minutes are part of what is shown)."""
    async def main() -> str:
        never = csp.Chan[int]()
        for i in range(2):
            if i:
                await csp.sleep(150)
            csp.go(never.recv)  # same-line
            await csp.gosched()
            csp.dump()
        return csp.dump()

    out = csp.testing.run(main)
    assert heads(out) == ["goroutine 1 [running]:", "goroutine 2 [chan receive, 2 minutes]:",
                          "goroutine 3 [chan receive]:"]
    assert "more goroutine" not in out


# SIGQUIT under csp.run: the dump on stderr, exit status 2 (Go)

needs_sigquit = pytest.mark.skipif(not hasattr(signal, "SIGQUIT"), reason="no SIGQUIT")

CHILD_PARKED = """\
import asyncio, sys
import csp

async def main():
    ch = csp.Chan[int]()
    csp.go(ch.recv)  # child-go
    await csp.gosched()
    print("ready", flush=True)
    await asyncio.sleep(3600)

csp.run(main, loop=sys.argv[1])
"""

# a child's own SIGQUIT handler, installed before csp.run
MINE = """\
import asyncio, os, signal, sys
import csp

def mine(signum, frame):
    sys.stdout.write("mine\\n")
    sys.stdout.flush()
    os._exit(0)

signal.signal(signal.SIGQUIT, mine)
"""

CHILD_OWN_HANDLER = MINE + """

async def main():
    assert signal.getsignal(signal.SIGQUIT) is mine
    print("ready", flush=True)
    await asyncio.sleep(3600)

csp.run(main, loop=sys.argv[1], sigquit=False)
"""

CHILD_RESTORED = MINE + """

async def main():
    assert signal.getsignal(signal.SIGQUIT) is not mine  # csp's, while it runs
    return 7

assert csp.run(main, loop=sys.argv[1]) == 7
assert signal.getsignal(signal.SIGQUIT) is mine
os.kill(os.getpid(), signal.SIGQUIT)
print("not reached", flush=True)
sys.exit(3)
"""


def child(tmp_path: Path, source: str, loop_name: str) -> subprocess.Popen[str]:
    path = tmp_path / "child.py"
    path.write_text(source)
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, str(path), loop_name], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=str(tmp_path))


def quit_when_ready(p: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == "ready\n"
        p.send_signal(signal.SIGQUIT)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    return out, err


@needs_sigquit
def test_sigquit_prints_the_dump_and_exits_2(tmp_path: Path, loop_name: str) -> None:
    p = child(tmp_path, CHILD_PARKED, loop_name)
    out, err = quit_when_ready(p)
    assert p.returncode == 2, err
    assert err.startswith("SIGQUIT: quit\n\ngoroutine 1 ["), err
    lines = err.splitlines()
    assert "goroutine 2 [chan receive]:" in lines
    go_line = CHILD_PARKED.splitlines().index("    csp.go(ch.recv)  # child-go") + 1
    assert block(lines, 2)[-2:] == ["created by main in goroutine 1",
                                    f"\t{tmp_path / 'child.py'}:{go_line}"]
    assert out == ""


@needs_sigquit
def test_sigquit_is_left_alone_with_sigquit_false(tmp_path: Path, loop_name: str) -> None:
    p = child(tmp_path, CHILD_OWN_HANDLER, loop_name)
    out, err = quit_when_ready(p)
    assert p.returncode == 0, err
    assert out == "mine\n"
    assert "SIGQUIT: quit" not in err


@needs_sigquit
def test_sigquit_handler_is_restored_when_run_returns(tmp_path: Path, loop_name: str) -> None:
    p = child(tmp_path, CHILD_RESTORED, loop_name)
    try:
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    assert out == "mine\n"


@needs_sigquit
def test_testing_run_leaves_sigquit_alone() -> None:
    async def main() -> Any:
        return signal.getsignal(signal.SIGQUIT)

    before = signal.getsignal(signal.SIGQUIT)
    assert csp.testing.run(main) is before
    assert signal.getsignal(signal.SIGQUIT) is before
