"""Channels: Go's ``chan T`` on asyncio.

Strategy. A channel is a bounded deque (the buffer) plus two FIFO queues of parked
operations, ``_recvq`` and ``_sendq``. A queue entry is a tuple ``(waiter, value,
case)``: the parked task's :class:`~csp._park.Waiter`, the value a sender offers, and
the select case index (-1 for a plain operation). A select parks one waiter in several
queues; the first partner to complete it wins, and the other entries become *stale*:
they stay in their queues and are skipped (and dropped) when reached, and a queue
that grows past a threshold is swept, so stale entries cost amortised O(1).

Every operation first tries to finish without blocking, exactly in Go's order
(``runtime/chan.go``); only if it cannot does it park. Handing a value to a parked
partner completes the partner's waiter on the spot, so the value belongs to the
partner from that instant and cancellation cannot lose it (see ``_park``).

Invariants (for live, i.e. PENDING, entries):
  * at most one of ``_recvq`` and ``_sendq`` holds live entries, except that one select
    may sit in both queues of one channel (it never pairs with itself);
  * a non-empty buffer means no live receivers;
  * a buffer with room means no live senders (for ``cap == 0`` every sender parks);
  * a closed channel has no live entries in either queue.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final, Generic, TypeVar, final

from csp import _park
from csp._errors import ChannelError, ClosedChannelError
from csp._park import DONE, PENDING, Waiter, _redeliver

T = TypeVar("T")

_Entry = tuple[Waiter, Any, int]

# A queue is swept of stale entries when it reaches this length, and after a sweep
# when it reaches twice its live length (Chan._sweep_at).
_SWEEP_MIN: Final = 64


def _enqueue(ch: Chan[Any], q: deque[_Entry], entry: _Entry) -> None:
    q.append(entry)
    if len(q) >= ch._sweep_at:
        _sweep(ch, q)


def _sweep(ch: Chan[Any], q: deque[_Entry]) -> None:
    """Drop the stale entries of ``q``, which reached ``ch._sweep_at`` entries.

    The next sweep waits until the queue has doubled its live length, so sweeping
    costs amortised O(1) per append.
    """
    live = [e for e in q if e[0].state is PENDING]
    if len(live) < len(q):
        q.clear()
        q.extend(live)
    ch._sweep_at = max(_SWEEP_MIN, 2 * len(live))


def _first_live(q: deque[_Entry]) -> _Entry | None:
    """Drop stale entries from the head of ``q``; return the head or None."""
    while q:
        e = q[0]
        if e[0].state is PENDING:
            return e
        q.popleft()
    return None


def _live_count(q: deque[_Entry]) -> int:
    return sum(1 for e in q if e[0].state is PENDING)


@final
class Chan(Generic[T]):
    """A Go channel: ``csp.Chan[T](cap=0)`` is ``make(chan T, cap)``.

    ``cap == 0`` makes an unbuffered channel: a send completes only when a receiver
    takes the value (rendezvous). A buffered channel holds up to ``cap`` values.
    Blocked senders and receivers are served first come, first served. After
    :meth:`close`, buffered values are still delivered, then receives return
    ``None`` (Go's zero value) at once, forever.

    A channel may be created before any event loop runs; it binds to the loop whose
    tasks first block on it. Example::

        ch = csp.Chan[int](1)
        await ch.send(1)                              # ch <- 1
        assert await ch.recv() == 1                   # <-ch
        ch.close()                                    # close(ch)
        assert await ch.recv_ok() == (None, False)    # v, ok := <-ch
        async for v in ch:                            # for v := range ch
            ...
    """

    __slots__ = ("__weakref__", "_buf", "_cap", "_closed", "_recvq", "_sendq", "_sweep_at")

    def __init__(self, cap: int = 0) -> None:
        if not isinstance(cap, int) or isinstance(cap, bool):
            raise TypeError(f"channel capacity must be an int, not {type(cap).__name__}")
        if cap < 0:
            raise ValueError(f"makechan: size out of range (negative capacity {cap})")
        self._cap = cap
        self._buf: deque[T] = deque()
        self._recvq: deque[_Entry] = deque()
        self._sendq: deque[_Entry] = deque()
        self._closed = False
        self._sweep_at = _SWEEP_MIN  # sweep a queue of stale entries at this length

    # -- non-blocking inspection ---------------------------------------------------

    @property
    def cap(self) -> int:
        """The buffer's capacity (Go: ``cap(ch)``); 0 for unbuffered channels."""
        return self._cap

    def __len__(self) -> int:
        """Values buffered now (Go: ``len(ch)``); parked senders are not counted."""
        return len(self._buf)

    def __repr__(self) -> str:
        if self is nil:
            return "<csp.nil>"
        state = " closed" if self._closed else ""
        return (
            f"<csp.Chan cap={self._cap} len={len(self._buf)} "
            f"recv_waiters={_live_count(self._recvq)} "
            f"send_waiters={_live_count(self._sendq)}{state}>"
        )

    # -- receive -------------------------------------------------------------------

    # recv, recv_ok, __anext__ and send repeat the same steps on purpose: each must be a
    # single coroutine on the hottest path (a shared helper costs a Python call per
    # operation, ~10% of a hand-off), so each also builds its waiter (new_waiter) and
    # completes its partner (Waiter.complete) inline. Change them together;
    # tests/test_chan.py::test_inlined_waiter_steps_match_park checks the copies.

    async def recv(self) -> T | None:
        """Receive a value (Go: ``v := <-ch``).

        Blocks until a value is available. Once the channel is closed and drained it
        returns ``None`` at once. If cancelled, no value was taken.
        """
        if _redeliver:
            _park.check_cancel()
        buf = self._buf
        if buf:
            v = buf.popleft()
            if self._sendq:
                self._admit_sender()
            return v
        sendq = self._sendq
        while sendq:
            w, v, i = sendq.popleft()
            if w.state is PENDING:
                # w.complete(i, None), inlined
                w.state = DONE
                w.index = i
                w.value = None
                w.ok = True
                r = w.waker
                if r is not None:
                    sched = r.sched
                    sched.runq.append(r)
                    if not sched.scheduled:
                        sched.scheduled = True
                        sched.loop.call_soon(sched.drain)
                return v
        if self._closed:
            return None
        w = Waiter()  # _park.new_waiter("chan receive"), inlined
        w._asyncio_future_blocking = True
        w.waker = None
        w.state = PENDING
        w.reason = "chan receive"
        w.on_cancel = None
        if self is not nil:
            q = self._recvq
            q.append((w, None, -1))
            if len(q) >= self._sweep_at:
                _sweep(self, q)
        else:
            w.reason = "chan receive (nil chan)"
        await w
        return w.value  # type: ignore[no-any-return]

    async def recv_ok(self) -> tuple[T | None, bool]:
        """Receive a value and whether it came from a send (Go: ``v, ok := <-ch``).

        ``ok`` is False only when the channel is closed and drained; the value is then
        ``None``. If cancelled, no value was taken.
        """
        if _redeliver:
            _park.check_cancel()
        buf = self._buf
        if buf:
            v = buf.popleft()
            if self._sendq:
                self._admit_sender()
            return v, True
        sendq = self._sendq
        while sendq:
            w, v, i = sendq.popleft()
            if w.state is PENDING:
                # w.complete(i, None), inlined
                w.state = DONE
                w.index = i
                w.value = None
                w.ok = True
                r = w.waker
                if r is not None:
                    sched = r.sched
                    sched.runq.append(r)
                    if not sched.scheduled:
                        sched.scheduled = True
                        sched.loop.call_soon(sched.drain)
                return v, True
        if self._closed:
            return None, False
        w = Waiter()  # _park.new_waiter("chan receive"), inlined
        w._asyncio_future_blocking = True
        w.waker = None
        w.state = PENDING
        w.reason = "chan receive"
        w.on_cancel = None
        if self is not nil:
            q = self._recvq
            q.append((w, None, -1))
            if len(q) >= self._sweep_at:
                _sweep(self, q)
        else:
            w.reason = "chan receive (nil chan)"
        await w
        return w.value, w.ok

    def _admit_sender(self) -> None:
        """A buffer slot just freed: move the longest-parked sender's value in."""
        sendq = self._sendq
        while sendq:
            w, v, i = sendq.popleft()
            if w.state is PENDING:
                self._buf.append(v)
                w.complete(i, None)
                return

    def __aiter__(self) -> Chan[T]:
        return self

    async def __anext__(self) -> T:
        """``async for v in ch`` (Go: ``for v := range ch``): ends when closed and drained."""
        # recv_ok, inlined: one coroutine per iteration instead of two
        if _redeliver:
            _park.check_cancel()
        buf = self._buf
        if buf:
            v = buf.popleft()
            if self._sendq:
                self._admit_sender()
            return v
        sendq = self._sendq
        while sendq:
            w, v, i = sendq.popleft()
            if w.state is PENDING:
                # w.complete(i, None), inlined
                w.state = DONE
                w.index = i
                w.value = None
                w.ok = True
                r = w.waker
                if r is not None:
                    sched = r.sched
                    sched.runq.append(r)
                    if not sched.scheduled:
                        sched.scheduled = True
                        sched.loop.call_soon(sched.drain)
                return v
        if self._closed:
            raise StopAsyncIteration
        w = Waiter()  # _park.new_waiter("chan receive"), inlined
        w._asyncio_future_blocking = True
        w.waker = None
        w.state = PENDING
        w.reason = "chan receive"
        w.on_cancel = None
        if self is not nil:
            q = self._recvq
            q.append((w, None, -1))
            if len(q) >= self._sweep_at:
                _sweep(self, q)
        else:
            w.reason = "chan receive (nil chan)"
        await w
        if not w.ok:
            raise StopAsyncIteration
        return w.value  # type: ignore[no-any-return]

    # -- send ----------------------------------------------------------------------

    async def send(self, value: T) -> None:
        """Send ``value`` (Go: ``ch <- v``).

        On an unbuffered channel this returns once a receiver has taken the value; on
        a buffered one, once the value is in the buffer. Raises
        :class:`ClosedChannelError` ("send on closed channel") if the channel is, or
        becomes while waiting, closed. If cancelled, the value was not sent.
        """
        if _redeliver:
            _park.check_cancel()
        if self._closed:
            raise ClosedChannelError("send on closed channel")
        recvq = self._recvq
        while recvq:
            w, _, i = recvq.popleft()
            if w.state is PENDING:
                # w.complete(i, value), inlined
                w.state = DONE
                w.index = i
                w.value = value
                w.ok = True
                r = w.waker
                if r is not None:
                    sched = r.sched
                    sched.runq.append(r)
                    if not sched.scheduled:
                        sched.scheduled = True
                        sched.loop.call_soon(sched.drain)
                return
        if len(self._buf) < self._cap:
            self._buf.append(value)
            return
        w = Waiter()  # _park.new_waiter("chan send"), inlined
        w._asyncio_future_blocking = True
        w.waker = None
        w.state = PENDING
        w.reason = "chan send"
        w.on_cancel = None
        if self is not nil:
            q = self._sendq
            q.append((w, value, -1))
            if len(q) >= self._sweep_at:
                _sweep(self, q)
        else:
            w.reason = "chan send (nil chan)"
        await w
        if not w.ok:
            raise ClosedChannelError("send on closed channel")

    # -- close ---------------------------------------------------------------------

    def close(self) -> None:
        """Close the channel (Go: ``close(ch)``).

        Wakes every parked receiver (they get ``None`` / ``(None, False)`` once the
        buffer is drained, which it is whenever receivers are parked) and every parked
        sender (they raise :class:`ClosedChannelError`). Closing a closed channel
        raises ``ClosedChannelError("close of closed channel")``; closing ``csp.nil``
        raises ``ChannelError("close of nil channel")``.
        """
        if self is nil:
            raise ChannelError("close of nil channel")
        if self._closed:
            raise ClosedChannelError("close of closed channel")
        self._closed = True
        recvq, sendq = self._recvq, self._sendq
        self._recvq, self._sendq = deque(), deque()
        # The channel is in its final state; only now wake anyone.
        for w, _, i in recvq:
            if w.state is PENDING:
                w.complete(i, None, False)
        for w, _, i in sendq:
            if w.state is PENDING:
                w.complete(i, None, False)

    # -- used by select: readiness and non-blocking completion ------------------------

    def _recv_ready(self) -> bool:
        return bool(self._buf) or self._closed or _first_live(self._sendq) is not None

    def _send_ready(self) -> bool:
        return (
            self._closed
            or len(self._buf) < self._cap
            or _first_live(self._recvq) is not None
        )

    def _recv_now(self) -> tuple[Any, bool]:
        """Precondition: ``_recv_ready()``. Receive without blocking."""
        buf = self._buf
        if buf:
            v = buf.popleft()
            if self._sendq:
                self._admit_sender()
            return v, True
        e = _first_live(self._sendq)
        if e is not None:
            self._sendq.popleft()
            w, v, i = e
            w.complete(i, None)
            return v, True
        return None, False  # closed and drained

    def _send_now(self, value: Any) -> None:
        """Precondition: ``_send_ready()``. Send without blocking."""
        if self._closed:
            raise ClosedChannelError("send on closed channel")
        e = _first_live(self._recvq)
        if e is not None:
            self._recvq.popleft()
            w, _, i = e
            w.complete(i, value)
            return
        self._buf.append(value)


nil: Final[Chan[Any]] = Chan(0)
"""Go's nil channel: send and receive block forever (until cancelled), its select
cases are never chosen, and ``close(nil)`` raises ``ChannelError``."""

