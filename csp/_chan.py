"""Channels: Go's ``chan T`` on asyncio.

Strategy (Go's ``runtime/chan.go``). A channel is a bounded deque (the buffer) plus two
FIFO queues of parked operations, ``_recvq`` and ``_sendq`` (:class:`~csp._waitq.WaitQ`).
Every operation is its non-blocking twin (:meth:`Chan._try_recv`, :meth:`Chan._try_send`:
Go's ``block=false``) plus, when that would block, one park: a
:class:`~csp._waiter.Waiter` in the right queue, awaited. A parked sender's waiter holds
the value it offers. Handing a value to a parked partner completes the partner's waiter
on the spot, so the value belongs to the partner from that instant and cancellation
cannot lose it (``csp._waiter``); a withdrawn operation leaves its queue at once.
select parks one node per case in the queues (``csp._select``); the non-blocking
``*_nowait`` calls, select's poll and the timers use the same two twins.

Invariants:
  * at most one of ``_recvq`` and ``_sendq`` is non-empty, except that one select may
    sit in both queues of one channel (it never pairs with itself);
  * a non-empty buffer means no parked receivers;
  * a buffer with room means no parked senders (for ``cap == 0`` every sender parks);
  * a closed channel has empty queues;
  * every node in either queue belongs to a pending operation (a queue holds only
    pending entries); a sender's node holds the value it offers in ``value``, and
    lets go of it the moment its send is withdrawn (cancelled, timed out, a select
    that took another case);
  * a value is handed only to a task that can still run: a parked partner whose loop
    was closed is withdrawn and skipped (``WaitQ.give`` / ``take``).
  * ``csp.nil``'s queues (:class:`_NilQ`) stay empty: nothing parked on nil is found;
  * with an overflow policy (``_drop``; ``cap >= 1``; the instance's class is then
    ``_DropNewestChan`` / ``_DropOldestChan``, whose ``_try_send`` never answers "would
    block") no sender ever parks: a send to a full buffer completes at once,
    discarding the new value or the oldest buffered one, and ``_dropped`` counts them.
    A plain channel's operations have no branch for it.
"""

from __future__ import annotations

import collections.abc
import inspect
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from types import BuiltinMethodType
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    Generic,
    Protocol,
    Self,
    TypeGuard,
    TypeVar,
    final,
    runtime_checkable,
)

from csp import _mode
from csp._check import TIMERS_FIX, count, foreign_loop
from csp._errors import ChannelError, ClosedChannelError, WouldBlock
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
from csp._waitq import WaitQ

__all__ = ["Chan", "RecvChan", "SendChan", "nil"]

acquire = lock.acquire
release = lock.release

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


_DROP_NEWEST: Final = 1
_DROP_OLDEST: Final = 2
_DROPS: Final = {"drop_newest": _DROP_NEWEST, "drop_oldest": _DROP_OLDEST}
_POLICY: Final = {0: "block", _DROP_NEWEST: "drop_newest", _DROP_OLDEST: "drop_oldest"}

BLOCK: Final[Any] = _Sentinel("<would block>")
"""What :meth:`Chan._try_recv` returns when a receive cannot complete now."""
CLOSED: Final[Any] = _Sentinel("<closed and drained>")
"""What :meth:`Chan._try_recv` returns for a closed, drained channel."""
_UNLOCKED: Final[Any] = _Sentinel("<go on unlocked>")
"""What :meth:`_BaseChan._locked` returns when the operation goes on unlocked."""

# the blocking operations, as _locked (and the compiled ChanOp) number them
_RECV: Final = 0
_RECV_OK: Final = 1
_SEND: Final = 2
_NEXT: Final = 3


class _ChanCore:
    """The channel's fields, its non-blocking twins (the steps every operation starts
    with) and its four blocking operations. Its compiled twin is ``ChanCore`` in
    ``csp/_speedups.c`` (see csp._mode), whose operations return a ``ChanOp`` (an
    awaitable that is its own coroutine) instead of a coroutine; the rest of the
    machinery is :class:`_BaseChan`."""

    __slots__ = ("_buf", "_cap", "_closed", "_recvq", "_sendq")

    _buf: deque[Any]
    _cap: int
    _closed: bool
    _recvq: WaitQ
    _sendq: WaitQ

    def _try_recv(self) -> Any:
        """Receive now if possible: the value, :data:`CLOSED` (closed and drained), or
        :data:`BLOCK`. Never yields."""
        buf = self._buf
        if buf:
            v = buf.popleft()
            if self._sendq.head is not None:
                # The buffer was full and a sender is parked: its value takes the slot
                # just freed (global FIFO order), and its send completes.
                sv = self._sendq.take(BLOCK)
                if sv is not BLOCK:
                    buf.append(sv)
            return v
        if self._sendq.head is not None:  # unbuffered: take a parked sender's value
            v = self._sendq.take(BLOCK)
            if v is not BLOCK:
                return v
        return CLOSED if self._closed else BLOCK

    def _try_send(self, value: Any) -> bool:
        """Send now if possible (a parked receiver, or room in the buffer): True if
        done, False if it would block. Raises ``ClosedChannelError`` if closed."""
        if self._closed:
            raise ClosedChannelError("send on closed channel")
        if self._recvq.head is not None and self._recvq.give(value):
            return True
        if len(self._buf) < self._cap:
            self._buf.append(value)
            return True
        return False

    # -- the blocking operations (their compiled twin: csp._speedups.ChanOp) -----------
    #
    # Each starts with the budget guard (csp._waiter); its slow branch is _locked, one
    # copy for both builds. Then the non-blocking twin, and when that would block one
    # park: a Waiter in the right queue, awaited.

    async def recv(self) -> Any:
        """Receive a value (Go: ``v := <-ch``).

        Blocks until a value is available. Once the channel is closed and drained it
        returns ``None`` at once. If cancelled, no value was taken.
        """
        budget.left -= 1
        if budget.left <= 0 or owed:  # (the budget guard: see csp._waiter)
            r = await self._locked(_RECV, None)
            if r is not _UNLOCKED:
                return r
        v = self._try_recv()
        if v is BLOCK:
            w = Waiter("chan receive")
            self._recvq.push(w)
            await w
            return w.value  # (None if woken by close)
        return None if v is CLOSED else v

    async def recv_ok(self) -> tuple[Any, bool]:
        """Receive a value and whether it came from a send (Go: ``v, ok := <-ch``).

        ``ok`` is False only when the channel is closed and drained; the value is then
        ``None``. If cancelled, no value was taken.
        """
        budget.left -= 1
        if budget.left <= 0 or owed:  # (the budget guard: see csp._waiter)
            r = await self._locked(_RECV_OK, None)
            if r is not _UNLOCKED:
                return r  # type: ignore[no-any-return]
        v = self._try_recv()
        if v is BLOCK:
            w = Waiter("chan receive")
            self._recvq.push(w)
            await w
            return w.value, w.ok
        return (None, False) if v is CLOSED else (v, True)

    async def __anext__(self) -> Any:
        """``async for v in ch`` (Go: ``for v := range ch``): ends when closed and drained."""
        budget.left -= 1
        if budget.left <= 0 or owed:  # (the budget guard: see csp._waiter)
            r = await self._locked(_NEXT, None)
            if r is not _UNLOCKED:
                return r
        v = self._try_recv()
        if v is BLOCK:
            w = Waiter("chan receive")
            self._recvq.push(w)
            await w
            if not w.ok:
                raise StopAsyncIteration
            return w.value
        if v is CLOSED:
            raise StopAsyncIteration
        return v

    async def send(self, value: Any) -> None:
        """Send ``value`` (Go: ``ch <- v``).

        On an unbuffered channel this returns once a receiver has taken the value; on
        a buffered one, once the value is in the buffer. Raises
        :class:`ClosedChannelError` ("send on closed channel") if the channel is, or
        becomes while waiting, closed. If cancelled, the value was not sent.
        """
        budget.left -= 1
        if budget.left <= 0 or owed:  # (the budget guard: see csp._waiter)
            if await self._locked(_SEND, value) is not _UNLOCKED:
                return
        if self._try_send(value):
            return
        w = Waiter("chan send", value)  # a parked sender's waiter holds its value
        self._sendq.push(w)
        await w
        if not w.ok:
            raise ClosedChannelError("send on closed channel")

    if TYPE_CHECKING:
        async def _locked(self, kind: int, value: Any) -> Any: ...


_PureChanCore: Final = _ChanCore  # (csp._dump names a ChanOp after its pure twin's code)
OPS: tuple[type, ...] = ()
"""The compiled core's operation type (``ch.recv()`` returns one), or none."""
OP_METHODS: Final[dict[type, tuple[str, ...]]] = {}
"""The compiled cores' methods that return a ChanOp, by core (csp._sync adds the
mutex's ``lock``)."""

if not TYPE_CHECKING:
    _speedups = _mode.speedups()
    if _speedups is not None:
        _speedups.setup_chan(BLOCK, CLOSED, _UNLOCKED, ClosedChannelError, WaitQ, owed,
                             deque)
        _ChanCore = _speedups.ChanCore
        OPS = (_speedups.ChanOp,)
        OP_METHODS[_ChanCore] = ("recv", "recv_ok", "send")
        # asyncio.create_task, anyio and csp.go take it (asyncio.iscoroutine asks the ABC)
        collections.abc.Coroutine.register(_speedups.ChanOp)


def is_coro(x: object) -> TypeGuard[Coroutine[Any, Any, Any]]:
    """``inspect.iscoroutine``, counting the compiled core's channel operations."""
    return type(x) in OPS or inspect.iscoroutine(x)


CORO_FUNCTIONS: Final[list[object]] = []
"""Compiled functions that return a coroutine-like operation (the compiled
``csp.select``): what csp.go and the rest accept as coroutine functions."""


def is_coro_function(f: object) -> bool:
    """A bound channel operation or a function of :data:`CORO_FUNCTIONS` (compiled
    core); ``inspect.iscoroutinefunction`` answers for the rest."""
    return op_name(f) is not None or any(f is c for c in CORO_FUNCTIONS)


def op_name(f: object) -> str | None:
    """The name of the operation (``"recv"``, ``"send"``, ``"lock"`` ...) if ``f`` is
    one of the compiled core's, bound (``ch.recv``: a builtin method, where the pure
    one is a bound coroutine function), else None."""
    if type(f) is BuiltinMethodType:
        name: str = f.__name__
        for core, names in OP_METHODS.items():
            if name in names and isinstance(f.__self__, core):
                return name
    return None


class _BaseChan(_ChanCore, Generic[T]):
    """The channel machinery shared by :class:`Chan` and the timers' receive-only
    channels (see the module docstring)."""

    __slots__ = ("__weakref__", "_drop", "_dropped")

    if TYPE_CHECKING:  # (the operations are _ChanCore's, typed here)
        async def recv(self) -> T | None: ...
        async def recv_ok(self) -> tuple[T | None, bool]: ...
        async def __anext__(self) -> T: ...
        async def send(self, value: T) -> None: ...

    def __init__(self, cap: int = 0, overflow: str = "block") -> None:
        if type(cap) is not int:
            cap = count("Chan", "cap", cap)
        if cap < 0:
            raise ValueError(f"makechan: size out of range (negative capacity {cap})")
        if overflow != "block":
            if overflow not in _DROPS:
                raise ValueError(f"Chan: overflow must be 'block', 'drop_newest' or "
                                 f"'drop_oldest', got {overflow!r}")
            if cap < 1:
                raise ValueError(f"Chan: overflow={overflow!r} needs cap >= 1, got {cap}")
        self._drop = _DROPS.get(overflow, 0)  # (a str that is not a policy: refused above)
        self._dropped = 0
        if self._drop:
            # The policy's class: its _try_send drops instead of answering "would
            # block"; a plain channel's path has no branch for it. (Same slots: the
            # class of an instance may be switched.)
            self.__class__ = _DROP_CLASSES[self._drop]
        self._cap = cap
        self._buf = deque()
        self._recvq = WaitQ()
        self._sendq = WaitQ()
        self._closed = False

    # -- the non-blocking twins (Go's block=false) ---------------------------------------

    def _enqueue(self, node: Any, send: bool) -> None:
        """Queue a select's case node (``csp._select``); csp.nil's queues keep nothing."""
        (self._sendq if send else self._recvq).push(node)

    def _waiting(self) -> tuple[int, int]:
        """(parked receive operations, parked send operations), for reprs."""
        return self._recvq.count(), self._sendq.count()

    # -- receive -----------------------------------------------------------------------

    def recv_nowait(self) -> T | None:
        """Receive if a value is ready now, else raise :class:`csp.WouldBlock`.

        Closed and drained: ``None``. A plain call (never yields): usable from
        callbacks and signal handlers.
        """
        v = self._try_recv_any()
        if v is BLOCK:
            raise WouldBlock("receive would block")
        return None if v is CLOSED else v

    def recv_ok_nowait(self) -> tuple[T | None, bool]:
        """``recv_ok`` if it can complete now, else raise :class:`csp.WouldBlock`."""
        v = self._try_recv_any()
        if v is BLOCK:
            raise WouldBlock("receive would block")
        return (None, False) if v is CLOSED else (v, True)

    def __aiter__(self) -> Self:
        return self

    # -- send ----------------------------------------------------------------------------

    def send_nowait(self, value: T) -> None:
        """Send if that can complete now (a parked receiver or buffer room), else raise
        :class:`csp.WouldBlock`; ``ClosedChannelError`` if closed. A plain call (never
        yields): usable from callbacks and signal handlers."""
        enter()
        if shared.on:
            with lock:
                if self._try_send(value):
                    return
        elif self._try_send(value):
            return
        raise WouldBlock("send would block")

    # -- shared mode and threads (csp._threads) ------------------------------------------

    def _try_recv_any(self) -> Any:
        """:meth:`_try_recv` from any thread."""
        enter()
        if shared.on:
            with lock:
                return self._try_recv()
        return self._try_recv()

    async def _locked(self, kind: int, value: Any) -> Any:
        """The budget guard's slow branch, for both builds: raise an owed cancellation
        and yield if the budget is spent (``prelude``); in shared mode (csp._threads)
        run the whole operation in its locked form and return its outcome. Else
        :data:`_UNLOCKED`: the caller goes on with its unlocked form."""
        # shared mode, the budget not spent, nothing owed: the locked form at once;
        # else prelude() decides (True: shared mode)
        if not ((shared.on and budget.left > -BUDGET and not owed) or await prelude()):
            return _UNLOCKED
        if kind == _SEND:
            w = self._send_locked(value)
            if w is not None:
                await w
                if not w.ok:
                    raise ClosedChannelError("send on closed channel")
            return None
        w, v = self._recv_locked()
        if w is not None:
            await w
            ok = w.ok
            v = w.value
        else:
            ok = v is not CLOSED
            if not ok:
                v = None
        if kind == _RECV:
            return v
        if kind == _RECV_OK:
            return v, ok
        if not ok:
            raise StopAsyncIteration
        return v

    def _recv_locked(self) -> tuple[Waiter | None, Any]:
        """A receive in shared mode: try, else park, in one step under the csp lock.
        ``(None, value or CLOSED)``, or ``(waiter, None)`` for the caller to await."""
        acquire()  # (not ``with``: an explicit pair costs half as much)
        try:
            v = self._try_recv()
            if v is not BLOCK:
                return None, v
            w = Waiter("chan receive")
            self._recvq.push(w)
            return w, None
        finally:
            release()

    def _send_locked(self, value: Any) -> Waiter | None:
        """A send in shared mode: try, else park, in one step under the csp lock. None
        if it completed, else the waiter for the caller to await."""
        acquire()
        try:
            if self._try_send(value):
                return None
            w = Waiter("chan send", value)
            self._sendq.push(w)
            return w
        finally:
            release()

    def _recv_blocking(self, call: str, timeout: object) -> tuple[Any, bool]:
        t = timeout_of(call, timeout)
        no_loop_here(call, "await ch.recv()")
        enter()
        with lock:
            v = self._try_recv()
            if v is not BLOCK:
                return (None, False) if v is CLOSED else (v, True)
            w = Waiter("chan receive")
            tw = thread_waker(w)
            self._recvq.push(w)
        wait_thread(w, tw, t, call)
        return w.value, w.ok

    def recv_blocking(self, timeout: float | None = None) -> T | None:
        """``recv`` for a thread with no running event loop: blocks the thread.

        ``timeout`` (seconds, None for none) raises ``TimeoutError``, and then no
        value was taken. On a thread whose loop is running: ``RuntimeError`` (use
        ``await ch.recv()``)."""
        return self._recv_blocking("recv_blocking", timeout)[0]  # type: ignore[no-any-return]

    def recv_ok_blocking(self, timeout: float | None = None) -> tuple[T | None, bool]:
        """``recv_ok`` for a thread with no running event loop (see :meth:`recv_blocking`)."""
        return self._recv_blocking("recv_ok_blocking", timeout)

    def send_blocking(self, value: T, timeout: float | None = None) -> None:
        """``send`` for a thread with no running event loop: blocks the thread until
        the send completes.

        ``timeout`` (seconds, None for none) raises ``TimeoutError``, and then nothing
        was sent. ``ClosedChannelError`` as ``send``. On a thread whose loop is
        running: ``RuntimeError`` (use ``await ch.send(v)``)."""
        t = timeout_of("send_blocking", timeout)
        no_loop_here("send_blocking", "await ch.send(v)")
        enter()
        with lock:
            if self._try_send(value):
                return
            w = Waiter("chan send", value)
            tw = thread_waker(w)
            self._sendq.push(w)
        wait_thread(w, tw, t, "send_blocking")
        if not w.ok:
            raise ClosedChannelError("send on closed channel")

    # -- close ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the channel (Go: ``close(ch)``).

        Wakes every parked receiver (they get ``None`` / ``(None, False)``: the buffer
        is empty whenever receivers are parked) and every parked sender (they raise
        :class:`ClosedChannelError`). Closing a closed channel raises
        ``ClosedChannelError("close of closed channel")``; closing ``csp.nil`` raises
        ``ChannelError("close of nil channel")``. Never raises an owed cancellation.
        """
        if self is nil:
            raise ChannelError("close of nil channel")
        enter()
        if shared.on:
            with lock:
                self._close()
        else:
            self._close()

    def _close(self) -> None:
        if self._closed:
            raise ClosedChannelError("close of closed channel")
        self._closed = True
        # Completing only queues wake-ups; nobody runs before the channel is final.
        self._recvq.complete_all(None, False)
        self._sendq.complete_all(None, False)

    # -- inspection ----------------------------------------------------------------------

    @property
    def cap(self) -> int:
        """The buffer's capacity (Go: ``cap(ch)``); 0 for unbuffered channels."""
        return self._cap

    @property
    def overflow(self) -> str:
        """What a send to a full buffer does: ``"block"`` (Go), ``"drop_newest"`` or
        ``"drop_oldest"``."""
        return _POLICY[self._drop]

    @property
    def dropped(self) -> int:
        """Values discarded by the overflow policy so far (0 for ``"block"``)."""
        return self._dropped

    def __len__(self) -> int:
        """Values buffered now (Go: ``len(ch)``); parked senders are not counted."""
        return len(self._buf)

    def _invariants(self) -> None:
        self._recvq._invariants()
        self._sendq._invariants()
        r, s = self._waiting()
        if r and s:  # only one select may sit in both queues
            owners = {getattr(n, "sel", n) for n in self._recvq}
            assert owners == {getattr(n, "sel", n) for n in self._sendq}
            assert len(owners) == 1
        assert not self._buf or r == 0 or (r and s)
        assert len(self._buf) >= self._cap or s == 0 or (r and s)
        assert not self._closed or (r == 0 and s == 0)
        assert len(self._buf) <= max(self._cap, 1)
        assert not self._drop or (s == 0 and self._cap >= 1)  # a dropping send never parks

    def __repr__(self) -> str:
        if self is nil:
            return "<csp.nil>"
        r, s = self._waiting()
        state = " closed" if self._closed else ""
        if self._drop:
            state = f" overflow={_POLICY[self._drop]} dropped={self._dropped}{state}"
        return (
            f"<csp.Chan cap={self._cap} len={len(self._buf)} "
            f"recv_waiters={r} send_waiters={s}{state}>"
        )


@final
class Chan(_BaseChan[T]):
    """A Go channel: ``csp.Chan[T](cap=0)`` is ``make(chan T, cap)``.

    ``cap == 0`` makes an unbuffered channel: a send completes only when a receiver
    takes the value (rendezvous). A buffered channel holds up to ``cap`` values.
    Blocked senders and receivers are served first come, first served. After
    :meth:`close`, buffered values are still delivered, then receives return
    ``None`` (Go's zero value) at once, forever.

    ``overflow="drop_newest"`` or ``"drop_oldest"`` (``cap >= 1``) never blocks a
    sender: a send to a full buffer completes at once, discarding the new value or the
    oldest buffered one (core.async's dropping and sliding buffers, Kotlin's
    ``BufferOverflow``); :attr:`dropped` counts them.

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


    __slots__ = ()


class _NilQ(WaitQ):
    """The queues of ``csp.nil``: nothing is ever queued (so nothing ever completes a
    waiter parked on nil); a plain operation's waiter says so in its reason."""

    __slots__ = ()

    def push(self, n: Any) -> None:
        if type(n) is Waiter:
            n.reason += " (nil chan)"


class _DropNewestChan(Chan[T]):  # type: ignore[misc]  # (Chan is final to users)
    """A ``Chan(cap, overflow="drop_newest")`` (core.async's dropping buffer)."""

    __slots__ = ()

    def _try_send(self, value: Any) -> bool:
        if not Chan._try_send(self, value):
            self._dropped += 1  # full: the new value is discarded; the send completes
        return True


class _DropOldestChan(Chan[T]):  # type: ignore[misc]
    """A ``Chan(cap, overflow="drop_oldest")`` (a sliding buffer, Kotlin DROP_OLDEST)."""

    __slots__ = ()

    def _try_send(self, value: Any) -> bool:
        if not Chan._try_send(self, value):
            self._buf.popleft()  # full (so nobody is parked): the oldest makes room
            self._buf.append(value)
            self._dropped += 1
        return True


_DROP_CLASSES: Final[dict[int, type[Chan[Any]]]] = {
    _DROP_NEWEST: _DropNewestChan, _DROP_OLDEST: _DropOldestChan,
}

nil: Final[Chan[Any]] = Chan(0)
"""Go's nil channel: send and receive block forever (until cancelled), its select
cases are never chosen, and ``close(nil)`` raises ``ChannelError``."""
nil._recvq = nil._sendq = _NilQ()


@final
class _TimerChan(_BaseChan[T]):
    """The receive-only channel of a timer (``after``, ``tick``, ``Timer.c``,
    ``Ticker.c``): Go 1.23 timer channels. It holds at most one fired value, which
    counts as pending (``len`` and ``cap`` are 0, as in Go 1.23); ``send`` and
    ``close`` raise ``ChannelError``. Only the timer delivers (:meth:`_fire`)."""

    __slots__ = ("_loop",)

    def __init__(self, loop: Any) -> None:
        super().__init__(1)
        self._loop = loop  # the timer's loop: only it can fire a value into the slot

    def _try_recv(self) -> Any:
        v = _BaseChan._try_recv(self)
        if v is BLOCK and self._loop.is_closed():
            # the timer that would deliver is on a closed loop: it can never fire
            raise foreign_loop("this timer channel", self._loop, None, TIMERS_FIX)
        return v

    def _try_send(self, value: Any) -> bool:
        raise ChannelError("send to receive-only channel")

    def close(self) -> None:
        raise ChannelError("close of receive-only channel")

    def _fire(self, value: Any) -> bool:
        """Deliver without blocking: to the longest-parked receiver, else into the
        empty slot; False (dropped) if a value is already pending (a ticker's slow
        receiver keeps the oldest tick)."""
        if shared.on:
            with lock:
                return _BaseChan._try_send(self, value)
        return _BaseChan._try_send(self, value)

    def _discard(self) -> bool:
        """Drop a fired value nobody received yet; True if there was one."""
        if shared.on:
            with lock:
                return self._discard1()
        return self._discard1()

    def _discard1(self) -> bool:
        if self._buf:
            self._buf.clear()
            return True
        return False

    def _pending(self) -> bool:
        return bool(self._buf)

    @property
    def cap(self) -> int:
        return 0

    def __len__(self) -> int:
        return 0

    def __repr__(self) -> str:
        r, _ = self._waiting()
        fired = " fired" if self._buf else ""
        return f"<csp timer channel recv_waiters={r}{fired}>"


# -- direction views, for annotations (Go: <-chan T, chan<- T) -------------------------


@runtime_checkable
class RecvChan(Protocol[T_co]):
    """A receive-only view of a channel, for annotations (Go: ``<-chan T``).

    ``Chan[T]`` is assignable to ``RecvChan[T]``; a ``RecvChan`` has ``recv``,
    ``recv_ok``, ``recv_nowait``, ``recv_ok_nowait``, ``async for``, ``len`` and
    ``cap``, and no ``send`` or ``close``. The channels of timers are receive-only.
    Example::

        async def consume(jobs: csp.RecvChan[int]) -> None:
            async for j in jobs:
                ...
    """

    async def recv(self) -> T_co | None:
        """Receive a value (Go: ``<-ch``); None once closed and drained."""
        ...

    async def recv_ok(self) -> tuple[T_co | None, bool]:
        """Receive a value and whether it came from a send (Go: ``v, ok := <-ch``)."""
        ...

    def recv_nowait(self) -> T_co | None:
        """Receive if a value is ready now, else raise :class:`csp.WouldBlock`."""
        ...

    def recv_ok_nowait(self) -> tuple[T_co | None, bool]:
        """``recv_ok`` if it can complete now, else raise :class:`csp.WouldBlock`."""
        ...

    def __aiter__(self) -> AsyncIterator[T_co]:
        """``async for v in ch`` (Go: ``for v := range ch``)."""
        ...

    def __len__(self) -> int:
        """Values buffered now (Go: ``len(ch)``)."""
        ...

    @property
    def cap(self) -> int:
        """The buffer's capacity (Go: ``cap(ch)``)."""
        ...


@runtime_checkable
class SendChan(Protocol[T_contra]):
    """A send-only view of a channel, for annotations (Go: ``chan<- T``).

    ``Chan[T]`` is assignable to ``SendChan[T]``; a ``SendChan`` has ``send``,
    ``send_nowait``, ``close`` (Go allows closing a send-only channel), ``len`` and
    ``cap``, and no receive. Example::

        async def produce(out: csp.SendChan[int]) -> None:
            for i in range(3):
                await out.send(i)
            out.close()
    """

    async def send(self, value: T_contra) -> None:
        """Send ``value`` (Go: ``ch <- v``)."""
        ...

    def send_nowait(self, value: T_contra) -> None:
        """Send if that can complete now, else raise :class:`csp.WouldBlock`."""
        ...

    def close(self) -> None:
        """Close the channel (Go: ``close(ch)``)."""
        ...

    def __len__(self) -> int:
        """Values buffered now (Go: ``len(ch)``)."""
        ...

    @property
    def cap(self) -> int:
        """The buffer's capacity (Go: ``cap(ch)``)."""
        ...
