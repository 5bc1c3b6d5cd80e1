"""Goroutine reports in Go's dump format: ``csp.dump()``, the deadlock report, the
leak check of the pytest plugin and SIGQUIT all render here.

Go prints, for each goroutine, ``goroutine N [STATE]:`` (``[STATE, N minutes]:`` once
it has been in that state a minute), its stack innermost call
first (``pkg.fn(...)`` then ``\\tfile:line``), and ``created by pkg.fn in goroutine M``
with the line of the ``go`` statement. So does this module (functions named as Python
tracebacks name them, without the module), with two changes for Python: csp's own
frames are folded into the one public call the program made (``csp.Chan.recv(...)``:
where it is blocked, not how csp parks), and goroutines whose
report would be identical (same state, same stack, same creation site and creator) are grouped,
the first shown in full and the rest counted: a million workers parked on one line
make a short report, not a 70 MiB one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from types import CodeType, CoroutineType, FrameType
from typing import Any, Final, NamedTuple

__all__ = ["Entry", "Origin", "render", "stack"]

_CSP_DIR: Final = os.path.dirname(os.path.abspath(__file__)) + os.sep
SHOWN_IDS: Final = 10
"""How many ids of a group's other goroutines the report lists."""


class Origin(NamedTuple):
    """Where a goroutine was created: the code and instruction offset of the call to
    ``go`` (csp's own callers report theirs), and the id of the goroutine that made it
    (0: a plain task or a callback). What ``csp.go`` keeps, as cheap as it can be."""

    code: CodeType
    lasti: int
    parent: int

    @property
    def line(self) -> int:
        for start, end, line in self.code.co_lines():
            if start <= self.lasti < end and line is not None:
                return line
        return self.code.co_firstlineno


class Entry(NamedTuple):
    """One goroutine of a report."""

    gid: int
    state: str
    coro: Any  # the goroutine's coroutine (the user's, not csp's driver)
    origin: tuple[CodeType, int, int] | None  # see Origin
    minutes: int = 0  # how long it has been in this state, when 1 or more (as Go)


def _in_csp(code: CodeType) -> bool:
    return code.co_filename.startswith(_CSP_DIR)


def _name(code: CodeType) -> str:
    """A function's name as a Python traceback would give it, qualified within its
    module (``Worker.run``, ``main.worker`` for a function nested in ``main``); csp's
    own as ``csp.*``."""
    qual = getattr(code, "co_qualname", code.co_name).replace(".<locals>", "")
    return f"csp.{qual}" if _in_csp(code) else qual


def _op_site(op: Any) -> tuple[str, CodeType] | None:
    """A compiled operation (``ch.recv()``, ``csp.select(...)`` of csp._speedups, which
    have no frame): its public name and the code of its pure twin; None if ``op`` is
    not one."""
    from csp import _chan, _select

    if type(op) not in _chan.OPS:
        return None
    if op.__name__ == "select":
        return "csp.select", _select._pure_select.__code__
    if op.__name__ == "lock":
        from csp import _sync

        return f"csp.{type(op.chan).__name__}.lock", _sync._PureMutexCore.lock.__code__
    code: CodeType = getattr(_chan._PureChanCore, op.__name__).__code__
    return f"csp.{type(op.chan).__name__}.{code.co_name}", code


def _frames(coro: Any) -> tuple[list[FrameType], Any]:
    """The frames of a coroutine chain, outermost first, and what the innermost one
    awaits (None, or an awaitable with no frame)."""
    out: list[FrameType] = []
    while coro is not None:
        f = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if f is None:
            break
        out.append(f)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return out, coro


def stack(coro: Any) -> tuple[tuple[str, str], ...]:
    """``(function, file:line)`` for each call of a coroutine chain, innermost first;
    each run of csp frames is folded into its outermost one (the call the program made)."""
    out: list[tuple[str, str]] = []
    prev_csp = False
    frames, tail = _frames(coro)  # outermost first
    first_user = next((i for i, f in enumerate(frames) if not _in_csp(f.f_code)), 0)
    del frames[:first_user]  # csp's wrapper around the goroutine's function (wg.go)
    for f in frames:
        code = f.f_code
        mine = _in_csp(code)
        if mine and prev_csp:
            continue
        prev_csp = mine
        name = _name(code)
        if mine:  # a method: named after the public class (csp.Chan.recv, not _BaseChan)
            me = f.f_locals.get("self")
            if me is not None and type(me).__module__.startswith("csp"):
                name = f"csp.{type(me).__name__}.{code.co_name}"
        out.append((name, f"{code.co_filename}:{f.f_lineno}"))
    site = _op_site(tail)
    if site is not None and not prev_csp:  # a compiled operation: its pure twin's site
        out.append((site[0], f"{site[1].co_filename}:{site[1].co_firstlineno}"))
    out.reverse()
    return tuple(out)


def _line(code: CodeType, lasti: int, memo: dict[tuple[CodeType, int], int]) -> int:
    key = (code, lasti)
    line = memo.get(key)
    if line is None:
        line = memo[key] = Origin(code, lasti, 0).line
    return line


def _key(e: Entry, memo: dict[tuple[CodeType, int], int]) -> tuple[Any, ...]:
    """What makes two entries render alike: state, the frames (code and line of
    each), the creation site and the creating goroutine. Cheap: nothing is formatted,
    each (code, offset) is turned into a line once."""
    frames = []
    coro = e.coro
    while coro is not None:
        if type(coro) is CoroutineType:  # (the common case, without getattr)
            f = coro.cr_frame
            nxt = coro.cr_await
        else:
            f = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            nxt = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        if f is None:
            site = _op_site(coro)
            if site is not None:
                frames.append((site[1], site[1].co_firstlineno))
            break
        frames.append((f.f_code, _line(f.f_code, f.f_lasti, memo)))
        coro = nxt
    o = e.origin
    return (e.state, e.minutes, tuple(frames),
            None if o is None else (o[0], _line(o[0], o[1], memo), o[2]))


def _render_one(e: Entry, frames: tuple[tuple[str, str], ...]) -> list[str]:
    how_long = f", {e.minutes} minutes" if e.minutes >= 1 else ""  # (Go: "1 minutes")
    lines = [f"goroutine {e.gid} [{e.state}{how_long}]:"]
    for fn, where in frames:
        lines.append(f"{fn}(...)")
        lines.append(f"\t{where}")
    o = Origin(*e.origin) if e.origin is not None else None
    if o is not None:
        suffix = f" in goroutine {o.parent}" if o.parent else ""
        lines.append(f"created by {_name(o.code)}{suffix}")
        lines.append(f"\t{o.code.co_filename}:{o.line}")
    return lines


def render(entries: Iterable[Entry]) -> list[str]:
    """The report's lines for ``entries``, in id order, a blank line between
    goroutines; identical goroutines grouped under the first."""
    groups: dict[tuple[Any, ...], list[Entry]] = {}
    memo: dict[tuple[CodeType, int], int] = {}
    for e in sorted(entries):  # (by id: ids are unique, nothing else is compared)
        groups.setdefault(_key(e, memo), []).append(e)
    lines: list[str] = []
    for members in groups.values():
        if lines:
            lines.append("")
        lines.extend(_render_one(members[0], stack(members[0].coro)))
        rest = members[1:]
        if rest:
            ids = ", ".join(str(m.gid) for m in rest[:SHOWN_IDS])
            more = ", ..." if len(rest) > SHOWN_IDS else ""
            noun = "goroutine" if len(rest) == 1 else "goroutines"
            lines.append(f"... and {len(rest):,} more {noun} blocked at the same place "
                         f"(goroutine {ids}{more})")
    return lines
