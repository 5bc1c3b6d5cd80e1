"""csp/_dump.py: goroutine reports in Go's dump format (the DeadlockError report).

Invariants: each goroutine shows ``goroutine N [STATE]:``, its stack innermost call
first as ``fn(...)`` / ``\\tfile:line`` lines with csp's own calls folded into the one
public call the program made (``csp.Chan.recv``), and ``created by FN in goroutine M``
with the file and line of the ``go`` call (of ``wg.go`` / ``g.go`` for goroutines csp
starts for the program); goroutines whose report would be identical are grouped, the
first in full and the others counted; ids in order, main first.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

import csp

HERE = __file__


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
