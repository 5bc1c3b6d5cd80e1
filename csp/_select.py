"""select: wait on several channel operations, commit exactly one.

Strategy (Go's ``runtime/select.go``, single-threaded): parse the cases; poll them all
at one instant (no await in between, so readiness cannot change); if some are ready,
pick one uniformly at random and complete it without blocking. Otherwise, unless
``default`` is given, park one waiter in every case's queue, in a fresh random order.
The first partner (or close) to reach any of those entries completes the waiter for
that case; the other entries go stale and are skipped by their channels. A cancelled
select is a cancelled waiter: no entry can complete it any more, so it commits nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Final

from csp import _park
from csp._chan import Chan, _enqueue, _first_live, nil
from csp._errors import ClosedChannelError
from csp._park import _redeliver

_RECV: Final = Chan.recv
_RECV_OK: Final = Chan.recv_ok
_SEND: Final = Chan.send

_random = random.random

# case kinds
_K_RECV: Final = 0
_K_RECV_OK: Final = 1
_K_SEND: Final = 2


def _bad_case(i: int, case: object) -> TypeError:
    hint = ""
    if hasattr(case, "cr_frame"):  # a coroutine: ch.recv() instead of ch.recv
        case.close()  # type: ignore[attr-defined]
        hint = " (pass the bound method, not its call: ch.recv, not ch.recv())"
    elif isinstance(case, tuple) and len(case) == 2 and hasattr(case[0], "cr_frame"):
        case[0].close()
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


async def select(
    *cases: Callable[[], Any] | tuple[Callable[[Any], Any], Any], default: bool = False
) -> tuple[int, Any]:
    """Wait until one of several channel operations can proceed, and do exactly that one.

    Go: ``select``. Each case is ``ch.recv`` (the value is the received value, None if
    closed), ``ch.recv_ok`` (the value is ``(value, ok)``) or ``(ch.send, x)`` (the
    value is None). Returns ``(index, value)`` of the case that took effect.

    * Several cases ready: one is chosen uniformly at random.
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
    if _redeliver:
        _park.check_cancel()
    # Poll every case at one instant (no await in between), checking its shape on the
    # way. csp.nil is never ready by construction: no buffer, never closed, nothing
    # ever queued. Only the ready indexes are kept: this is the hot path.
    ready: list[int] = []
    for i, case in enumerate(cases):
        if type(case) is tuple:
            f = None  # a send case (checked below); no exception raised on this path
        else:
            try:
                f = case.__func__  # type: ignore[union-attr]
            except AttributeError:
                f = None
        if f is _RECV or f is _RECV_OK:
            ch = case.__self__  # type: ignore[union-attr]
            if ch._buf or ch._closed or (ch._sendq and _first_live(ch._sendq) is not None):
                ready.append(i)
        elif (
            type(case) is tuple
            and len(case) == 2
            and getattr(case[0], "__func__", None) is _SEND
        ):
            ch = case[0].__self__  # type: ignore[attr-defined]
            if (
                ch._closed
                or len(ch._buf) < ch._cap
                or (ch._recvq and _first_live(ch._recvq) is not None)
            ):
                ready.append(i)
        else:
            err = _bad_case(i, case)
            _close_coroutines(cases)
            raise err
    if ready:
        i = ready[0] if len(ready) == 1 else ready[int(_random() * len(ready))]
        case = cases[i]
        if type(case) is tuple:
            case[0].__self__._send_now(case[1])  # type: ignore[attr-defined]
            return i, None
        ch = case.__self__  # type: ignore[union-attr]
        buf = ch._buf
        if buf:  # ch._recv_now(), inlined for the buffered case
            value = buf.popleft()
            if ch._sendq:
                ch._admit_sender()
            ok = True
        else:
            value, ok = ch._recv_now()
        return i, ((value, ok) if case.__func__ is _RECV_OK else value)  # type: ignore[union-attr]
    if default:
        return -1, None

    # Park: the cases were checked above, so they parse without surprises.
    parsed: list[tuple[int, Chan[Any], Any]] = []
    for case in cases:
        if type(case) is tuple:
            parsed.append((_K_SEND, case[0].__self__, case[1]))  # type: ignore[attr-defined]
        else:
            f = case.__func__  # type: ignore[union-attr]
            parsed.append((_K_RECV if f is _RECV else _K_RECV_OK, case.__self__, None))  # type: ignore[union-attr]
    w = _park.new_waiter("select" if parsed else "select (no cases)")
    n = len(parsed)
    order = list(range(n))
    for j in range(n - 1, 0, -1):  # Fisher-Yates: a fresh random registration order
        k = int(_random() * (j + 1))
        order[j], order[k] = order[k], order[j]
    for i in order:
        kind, ch, v = parsed[i]
        if ch is nil:
            continue
        if kind == _K_SEND:
            _enqueue(ch, ch._sendq, (w, v, i))
        else:
            _enqueue(ch, ch._recvq, (w, None, i))
    await w
    i = w.index
    kind = parsed[i][0]
    if kind == _K_SEND:
        if not w.ok:
            raise ClosedChannelError("send on closed channel")
        return i, None
    if kind == _K_RECV_OK:
        return i, (w.value, w.ok)
    return i, w.value
