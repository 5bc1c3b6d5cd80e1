"""select: wait on several channel operations, commit exactly one.

Strategy (Go's ``runtime/select.go``): parse the cases once; try them one by one in a
random order with the channels' non-blocking twins, all at one instant (no await in
between), and commit the first that can go (first-ready in a uniformly random order is
a uniform choice among the ready cases). If none can, unless ``default`` is given, park
one :class:`_Case` node per case in the channels' queues, in a fresh random order, all
pointing at one :class:`~csp._waiter.Waiter`. The first partner (or close) that reaches
a node completes the waiter for that case and unlinks the other nodes (Go's third
pass); a cancelled select is a withdrawn waiter, whose nodes all leave their queues, so
it commits nothing.

Invariants:
  * while the select is parked, its cases form a ring through ``sib``, each case in
    its channel's queue (none for ``csp.nil``);
  * once it is over (a case fired, or the waiter was withdrawn: cancelled, timed out,
    its loop closed) no case is in any queue, the ring is broken and no case holds the
    value it offered: a finished select keeps nothing alive and leaves no cycle for
    the collector.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from types import BuiltinMethodType
from typing import TYPE_CHECKING, Any, Final

from csp import _mode
from csp._chan import BLOCK, CLOSED, CORO_FUNCTIONS, _BaseChan, op_name
from csp._errors import ClosedChannelError
from csp._threads import (
    BUDGET,
    enter,
    lock,
    no_loop_here,
    shared,
    thread_waker,
    timeout_of,
    wait_thread,
)
from csp._waiter import Waiter, budget, owed, prelude

__all__ = ["select", "select_blocking"]

# case kinds
_RECV: Final = 0
_RECV_OK: Final = 1
_SEND: Final = 2

# What a case's function is: ch.recv / ch.recv_ok / ch.send of a channel class.
_KINDS: Final[dict[Any, int]] = {
    _BaseChan.recv: _RECV, _BaseChan.recv_ok: _RECV_OK, _BaseChan.send: _SEND
}

_NAMES: Final[dict[str | None, int]] = {"recv": _RECV, "recv_ok": _RECV_OK, "send": _SEND}


def _kind(f: Any) -> int | None:
    """The case kind of ``f`` (``ch.recv`` ...), or None."""
    if type(f) is BuiltinMethodType:  # the compiled core's (csp._chan.op_name)
        return _NAMES.get(op_name(f))
    return _KINDS.get(getattr(f, "__func__", None))


_random = random.random

# Every permutation of up to five cases, so that one random() picks an order.
_PERMS: Final = [list(itertools.permutations(range(n))) for n in range(6)]


def _order(n: int) -> Any:
    """A uniformly random permutation of range(n)."""
    if n < 6:
        p = _PERMS[n]
        return p[int(_random() * len(p))]
    order = list(range(n))
    for j in range(n - 1, 0, -1):  # Fisher-Yates
        k = int(_random() * (j + 1))
        order[j], order[k] = order[k], order[j]
    return order


class _Case:
    """One case of a parked select, linked in its channel's queue (a WaitQ node).

    ``value`` is what a send case offers. Completing a case completes the select's
    waiter with this case's index and unlinks the select's other cases.
    Invariant: the cases of a parked select form a ring through ``sib`` (None once
    the select is over).
    """

    __slots__ = ("index", "next", "prev", "q", "sel", "sib", "value")

    def __init__(self, sel: Waiter, index: int, value: Any) -> None:
        self.sel = sel
        self.index = index
        self.value = value
        self.q: Any = None
        self.prev: Any = None
        self.next: Any = None
        self.sib: _Case | None = self

    def complete(self, value: Any, ok: bool = True) -> bool:
        """This case fired: True. False if the select's task can never run again (its
        waiter was withdrawn instead, and with it every case). Precondition: it was
        just taken out of its queue."""
        sel = self.sel
        sel.index = self.index
        if sel.complete(value, ok):
            sel.on_abort = None  # (it refers to the cases: no cycle left)
            _unlink_ring(self)
            return True
        return False

    def __repr__(self) -> str:
        return f"<csp select case {self.index} of {self.sel!r}>"


def _unlink_ring(first: _Case) -> None:
    """The select is over: take every case out of its queue (Go's third pass), let go
    of the values they offered and break the ring (no cycle left to collect)."""
    n: _Case | None = first
    while n is not None:
        q = n.q
        if q is not None:
            q.unlink(n)
        nxt = n.sib
        n.sib = n.value = None
        n = nxt


def _bad_case(i: int, case: object) -> TypeError:
    hint = ""
    if hasattr(case, "cr_frame"):  # a coroutine: ch.recv() instead of ch.recv
        hint = " (pass the bound method, not its call: ch.recv, not ch.recv())"
    elif isinstance(case, tuple) and len(case) == 2 and hasattr(case[0], "cr_frame"):
        hint = " (pass (ch.send, value), not ch.send(value))"
    return TypeError(
        f"select case {i}: expected ch.recv, ch.recv_ok or (ch.send, value), "
        f"got {case!r}{hint}"
    )


def _close_coroutines(cases: tuple[Any, ...]) -> None:
    """Close every coroutine passed by mistake (ch.recv()), so none warns unawaited."""
    for c in cases:
        if hasattr(c, "cr_frame"):
            c.close()
        elif isinstance(c, tuple) and c and hasattr(c[0], "cr_frame"):
            c[0].close()


def _parse(cases: tuple[Any, ...]) -> list[tuple[int, _BaseChan[Any], Any]]:
    """Each case as (kind, channel, value to send); TypeError for a bad one."""
    ops: list[tuple[int, _BaseChan[Any], Any]] = []
    for i, case in enumerate(cases):
        if type(case) is tuple:
            if len(case) == 2:
                if _kind(case[0]) == _SEND:
                    ops.append((_SEND, case[0].__self__, case[1]))
                    continue
        else:
            k = _kind(case)
            if k is not None and k != _SEND:
                ops.append((k, case.__self__, None))
                continue
        remote = _remote_select(case)
        if remote is not None:
            raise _HasRemote(remote)
        err = _bad_case(i, case)
        _close_coroutines(cases)
        raise err
    return ops


class _HasRemote(TypeError):
    """A case is on a remote channel (``csp.nats``): its module runs the select. Seen
    outside ``select`` (``select_blocking``), it is the TypeError it says."""

    def __init__(self, run: Callable[..., Any]) -> None:
        super().__init__(
            "select_blocking: remote channel cases (csp.nats) need an event loop: "
            "use await csp.select(...)")
        self.run = run


def _remote_select(case: object) -> Callable[..., Any] | None:
    """The select function of the remote channel ``case`` is on, or None."""
    target = case[0] if type(case) is tuple and len(case) == 2 else case
    return getattr(getattr(target, "__self__", None), "_csp_remote_select", None)


async def select(
    *cases: Callable[[], Any] | tuple[Callable[[Any], Any], Any], default: bool = False,
    priority: bool = False,
) -> tuple[int, Any]:
    """Wait until one of several channel operations can proceed, and do exactly that one.

    Go: ``select``. Each case is ``ch.recv`` (the value is the received value, None if
    closed), ``ch.recv_ok`` (the value is ``(value, ok)``) or ``(ch.send, x)`` (the
    value is None). Returns ``(index, value)`` of the case that took effect.

    * Several cases ready: one is chosen uniformly at random; with ``priority=True``
      the first of them in argument order (tokio's ``biased;``; parked selects are
      unaffected: the first case to be completed wins).
    * None ready and ``default=True``: returns ``(-1, None)`` at once.
    * None ready otherwise: blocks until exactly one case completes. A send case on a
      closed channel is ready and raises :class:`ClosedChannelError` when chosen.
    * ``csp.nil`` cases are never chosen; ``await select()`` blocks forever.
    * Cancelled while blocked: no case took effect.

    Example::

        i, v = await csp.select(jobs.recv, (results.send, r), ctx.done().recv)
        if i == 0:
            ...  # v is the job received
        elif i == 2:
            return  # the context is done
    """
    if default is not False and default is not True:
        raise TypeError(f"select: default must be True or False, got {default!r}")
    if priority is not False and priority is not True:
        raise TypeError(f"select: priority must be True or False, got {priority!r}")
    try:
        ops = _parse(cases)
    except _HasRemote as remote:
        return await remote.run(cases, default, priority)  # type: ignore[no-any-return]
    budget.left -= 1
    # (the budget guard, see csp._waiter; True: shared mode, poll and park under the lock)
    if (budget.left <= 0 or owed) and (
            (shared.on and budget.left > -BUDGET and not owed) or await prelude()):
        with lock:
            r = _poll(ops, priority)
            if r is None and not default:
                w = _park(ops, Waiter("select" if ops else "select (no cases)"))
    else:
        r = _poll(ops, priority)
        if r is None and not default:
            w = _park(ops, Waiter("select" if ops else "select (no cases)"))
    if r is not None:
        return r
    if default:
        return -1, None
    await w
    return _outcome(ops, w)


async def _wait_parked(ops: list[tuple[int, _BaseChan[Any], Any]]) -> tuple[int, Any]:
    """The compiled select's park, once its poll found no case ready (the pure select's
    last lines: one copy)."""
    w = _park(ops, Waiter("select" if ops else "select (no cases)"))
    await w
    return _outcome(ops, w)


_pure_select: Final = select
"""The pure select (csp._dump names the compiled one's frame after its code)."""

if not TYPE_CHECKING:
    _speedups = _mode.speedups()
    if _speedups is not None:
        # The compiled select (csp/_speedups.c) polls in C and parks or falls back here.
        _speedups.setup_select(select, _wait_parked, _random, _PERMS, _order)
        select = _speedups.select
        CORO_FUNCTIONS.append(select)


def select_blocking(
    *cases: Callable[[], Any] | tuple[Callable[[Any], Any], Any], default: bool = False,
    timeout: float | None = None,
) -> tuple[int, Any]:
    """:func:`select` for a thread with no running event loop: the same cases and
    result, blocking the thread.

    ``timeout`` (seconds, None for none) raises ``TimeoutError``, and then no case
    took effect. On a thread whose loop is running: ``RuntimeError`` (use
    ``await csp.select(...)``). Example, in a worker thread::

        i, v = csp.select_blocking(jobs.recv, quit.recv, timeout=5.0)
        if i == 1:
            return  # told to stop
    """
    if default is not False and default is not True:
        raise TypeError(f"select_blocking: default must be True or False, got {default!r}")
    t = timeout_of("select_blocking", timeout)
    ops = _parse(cases)
    no_loop_here("select_blocking", "await csp.select(...)")
    enter()
    with lock:
        r = _poll(ops, False)
        if r is not None:
            return r
        if default:
            return -1, None
        w = Waiter("select" if ops else "select (no cases)")
        tw = thread_waker(w)
        _park(ops, w)
    wait_thread(w, tw, t, "select_blocking")
    return _outcome(ops, w)


def _poll(ops: list[tuple[int, _BaseChan[Any], Any]], priority: bool) -> tuple[int, Any] | None:
    """Try the cases in a random order (or in argument order) with the channels'
    non-blocking twins: the first that can go now is taken, ``(index, value)``; None
    if none can."""
    for i in range(len(ops)) if priority else _order(len(ops)):
        kind, ch, v = ops[i]
        if kind == _SEND:
            if ch._try_send(v):
                return i, None
            continue
        r = ch._try_recv()
        if r is BLOCK:
            continue
        if kind == _RECV:
            return i, (None if r is CLOSED else r)
        return i, ((None, False) if r is CLOSED else (r, True))
    return None


def _park(ops: list[tuple[int, _BaseChan[Any], Any]], w: Waiter) -> Waiter:
    """Park a node per case for waiter ``w``, registered in a fresh random order."""
    first: _Case | None = None
    last: _Case | None = None
    for i in _order(len(ops)):
        kind, ch, v = ops[i]
        node = _Case(w, i, v)
        if first is None:
            first = node
        else:
            assert last is not None
            last.sib = node
        last = node
        ch._enqueue(node, kind == _SEND)
    if first is not None:
        assert last is not None
        last.sib = first  # close the ring
        # Withdrawn (cancelled): every case leaves its queue. (Bound to the first node:
        # the waiter -> node -> waiter cycle is cut when the select ends.)
        w.on_abort = lambda _w, first=first: _unlink_ring(first)
    return w


def _outcome(ops: list[tuple[int, _BaseChan[Any], Any]], w: Waiter) -> tuple[int, Any]:
    """What a parked select returns once its waiter completed."""
    i = w.index
    kind = ops[i][0]
    if kind == _SEND:
        if not w.ok:
            raise ClosedChannelError("send on closed channel")
        return i, None
    if kind == _RECV_OK:
        return i, (w.value, w.ok)
    return i, w.value
