"""Contexts: Go's package context (cancellation trees, deadlines, values).

Strategy (Go's ``context.go``). A context that can be cancelled is a
:class:`_CancelCtx`; a value context is a :class:`_ValueCtx` that remembers its nearest
cancellable ancestor, so ``done()``, ``err()`` and ``deadline()`` are O(1) at any depth
and ``value()`` walks up the chain, innermost first. A new cancellable context
registers itself in the ``_children`` of its nearest cancellable ancestor, or is born
cancelled if that ancestor already is. ``cancel()`` walks the subtree with an explicit
stack (no recursion limit on deep chains): it sets each node's error, closes its done
channel, stops its deadline timer and drops its children, all before returning, then
unlinks the cancelled node from its parent, so a long-lived parent only holds children
that are still live. Non-context listeners (the :func:`scope` bridge, ``after_func``)
are registered in ``_children`` too and are told through ``_parent_done``.

Invariants:
  * ``_err`` is None while live and is set exactly once; from then on ``_done`` is a
    closed channel, ``_children`` and ``_handle`` are None;
  * a live context is in its nearest cancellable ancestor's ``_children`` (unless that
    ancestor is None: a root or ``without_cancel``), and a cancelled one in nobody's;
  * ``_children`` is None rather than empty, so a parent that once had many children
    does not keep a large empty table;
  * ``_deadline`` is never later than the parent's deadline;
  * ``_loop`` is the loop whose timer expires the context at ``_deadline`` (its own
    ``_handle``'s, or the nearest cancellable ancestor's), None without a deadline.

Bad input fails at the call: deadlines and timeouts are checked by
``csp._check.duration`` (NaN is a ``ValueError``), ``after_func`` needs a callable. A
live context whose deadline timer is on a closed loop can never expire: ``done()``,
``after_func`` and ``scope`` refuse it with a ``RuntimeError`` naming that loop.
"""

from __future__ import annotations

import asyncio
import enum
import signal
import socket
import sys
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, Final, final

from csp import _compat
from csp._chan import Chan, nil
from csp._check import duration, foreign_loop

__all__ = [
    "Canceled",
    "CancelFunc",
    "Context",
    "DeadlineExceeded",
    "Scope",
    "after_func",
    "background",
    "cause",
    "notify_context",
    "scope",
    "todo",
    "with_cancel",
    "with_cancel_cause",
    "with_deadline",
    "with_deadline_cause",
    "with_timeout",
    "with_timeout_cause",
    "with_value",
    "without_cancel",
]


class Canceled(Exception):
    """The error of a context that was cancelled (Go: ``context.Canceled``).

    ``str()`` is Go's text, ``context canceled``. Example::

        ctx, cancel = csp.context.with_cancel(csp.context.background())
        cancel()
        assert isinstance(ctx.err(), csp.context.Canceled)
        print(ctx.err())  # context canceled
    """

    __module__ = "csp.context"  # tracebacks print the public name

    def __init__(self, msg: str = "context canceled") -> None:
        super().__init__(msg)


class DeadlineExceeded(TimeoutError):
    """The error of a context whose deadline passed (Go: ``context.DeadlineExceeded``).

    Also a ``TimeoutError``; ``str()`` is ``context deadline exceeded``. Example::

        ctx, cancel = csp.context.with_timeout(csp.context.background(), 0.01)
        await ctx.done().recv()
        assert isinstance(ctx.err(), csp.context.DeadlineExceeded)
        cancel()
    """

    __module__ = "csp.context"

    def __init__(self, msg: str = "context deadline exceeded") -> None:
        super().__init__(msg)


CancelFunc = Callable[[], None]
"""What ``with_cancel`` and friends return beside the context: ``cancel()``."""

# The start of a notify context's name; the rest is ", [<signals>])" (Context.__str__).
_NOTIFY_OPEN: Final = "signal.NotifyContext("


class Context:
    """A Go context: a cancellation signal, a deadline and values, passed down a call tree.

    Make them with :func:`background`, :func:`with_cancel`, :func:`with_timeout`,
    :func:`with_deadline`, :func:`with_value`; this class is for type annotations and
    ``isinstance`` only (do not subclass it). Example::

        ctx, cancel = csp.context.with_timeout(csp.context.background(), 2.0)
        try:
            i, v = await csp.select(results.recv, ctx.done().recv)
            if i == 1:
                raise ctx.err()
        finally:
            cancel()
    """

    __slots__ = ()

    _parent: Context | None

    def done(self) -> Chan[None]:
        """A channel that is closed when the context is cancelled or expires.

        The same channel every time; ``csp.nil`` for contexts that are never
        cancelled. Use it in select: ``ctx.done().recv``.
        """
        raise NotImplementedError

    def err(self) -> Canceled | DeadlineExceeded | None:
        """None while the context is live, then :class:`Canceled` or
        :class:`DeadlineExceeded` (the same object from then on)."""
        raise NotImplementedError

    def deadline(self) -> float | None:
        """When the context expires, in the loop's clock (``loop.time()``), or None."""
        raise NotImplementedError

    def value(self, key: object) -> Any:
        """The value bound to ``key`` by the innermost :func:`with_value` above this
        context (keys compared with ``==``), or None."""
        c: Context | None = self
        while c is not None:
            if type(c) is _ValueCtx and c._key == key:
                return c._val
            c = c._parent
        return None

    def _name(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        # Go's String(): the chain of constructor names from the root, built without
        # recursion so that deep chains print. A notify context wraps the name of its
        # parent, as Go's signalCtx does: signal.NotifyContext(context.Background, [interrupt]).
        names: list[str] = []
        c: Context | None = self
        while c is not None:
            names.append(c._name())
            c = c._parent
        parts: list[str] = []
        for name in reversed(names):
            if name.startswith(_NOTIFY_OPEN):
                parts = [_NOTIFY_OPEN + ".".join(parts) + name[len(_NOTIFY_OPEN) :]]
            else:
                parts.append(name)
        return ".".join(parts)


class _Listener:
    """Something registered in a context's ``_children`` that is not a context."""

    __slots__ = ()

    def _parent_done(self, err: Canceled | DeadlineExceeded, cause: BaseException) -> None:
        raise NotImplementedError


class _NeverDone(Context):
    """A context that is never cancelled: no done channel, no error, no deadline."""

    __slots__ = ()

    def done(self) -> Chan[None]:
        return nil

    def err(self) -> None:
        return None

    def deadline(self) -> None:
        return None


@final
class _EmptyCtx(_NeverDone):
    __slots__ = ("_label",)

    _parent = None

    def __init__(self, label: str) -> None:
        self._label = label

    def value(self, key: object) -> None:
        return None

    def _name(self) -> str:
        return self._label

    def __repr__(self) -> str:
        return f"<csp.context {self._label}>"


_background: Final = _EmptyCtx("context.Background")
_todo: Final = _EmptyCtx("context.TODO")

# Go's closedchan: the done channel of a context cancelled before anyone asked for it.
_closed: Final[Chan[None]] = Chan()
_closed.close()


@final
class _CancelCtx(Context):
    __slots__ = (
        "_cause",
        "_children",
        "_deadline",
        "_dl_cause",
        "_done",
        "_err",
        "_handle",
        "_kind",
        "_loop",
        "_parent",
        "_registered",
    )

    def __init__(self, parent: Context, deadline: float | None, kind: str) -> None:
        self._parent = parent
        self._deadline = deadline
        self._kind = kind
        self._done: Chan[None] | None = None
        self._err: Canceled | DeadlineExceeded | None = None
        self._cause: BaseException | None = None
        self._children: dict[_CancelCtx | _Listener, None] | None = None
        self._handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._dl_cause: BaseException | None = None
        # the ancestor whose _children hold us (None: nobody can cancel us from above)
        self._registered: _CancelCtx | None = None
        pc = _cc_of(parent)
        self._loop: asyncio.AbstractEventLoop | None = None if pc is None else pc._loop

    def done(self) -> Chan[None]:
        if self._loop is not None:
            self._check_loop()
        d = self._done
        if d is None:
            d = self._done = Chan()
        return d

    def _check_loop(self) -> None:
        """Refuse a live context whose deadline timer is on a closed loop: it would
        never expire."""
        loop = self._loop
        if loop is not None and self._err is None and loop.is_closed():
            raise foreign_loop(f"the deadline timer of {self}", loop, None,
                               "make deadline contexts inside the csp.run that uses them")

    def err(self) -> Canceled | DeadlineExceeded | None:
        err = self._err
        if err is None and self._loop is not None:
            self._check_loop()  # (a loop polling err() would spin forever)
        return err

    def deadline(self) -> float | None:
        return self._deadline

    def _name(self) -> str:
        if self._kind == "WithDeadline":
            return f"WithDeadline({self._deadline:.6g})"
        return self._kind

    def __repr__(self) -> str:
        err = self._err
        state = "live" if err is None else str(err)
        n = len(self._children) if self._children else 0
        d = self._done
        waiters = d._waiting()[0] if d is not None else 0
        return f"<csp.context {self} {state} children={n} done_waiters={waiters}>"

    # -- cancellation -----------------------------------------------------------

    def _user_cancel(self) -> None:
        if self._err is None:
            self._cancel(Canceled(), None)

    def _user_cancel_cause(self, cause: BaseException | None = None) -> None:
        if self._err is None:
            self._cancel(Canceled(), cause)


    def _cancel(self, err: Canceled | DeadlineExceeded, cause: BaseException | None) -> None:
        """Cancel this context and its subtree, then unlink it from its parent."""
        p = self._registered  # read first: _cancel_tree clears it
        _cancel_tree(self, err, err if cause is None else cause)
        if p is not None:
            _unlink(p, self)


def _expire(c: _CancelCtx) -> None:
    """Loop callback: the deadline of ``c`` passed."""
    c._handle = None
    if c._err is None:
        c._cancel(DeadlineExceeded(), c._dl_cause)


def _cancel_tree(root: _CancelCtx, err: Canceled | DeadlineExceeded,
                 cause: BaseException) -> None:
    """Cancel ``root`` and every live descendant; synchronous, iterative.

    Precondition: ``root._err is None``. Every node is finished (error set, done closed,
    timer stopped, children detached) before listeners are told, so a listener that
    looks at the tree sees it cancelled.
    """
    stack: list[_CancelCtx | _Listener] = [root]
    listeners: list[_Listener] = []
    while stack:
        c = stack.pop()
        if type(c) is not _CancelCtx:
            listeners.append(c)
            continue
        if c._err is not None:
            continue
        c._err = err
        c._cause = cause
        c._registered = None
        h = c._handle
        if h is not None:
            c._handle = None
            h.cancel()
        d = c._done
        if d is None:
            c._done = _closed
        elif not d._closed:
            d.close()
        children = c._children
        if children:
            c._children = None
            stack.extend(reversed(children))
    for lst in listeners:
        lst._parent_done(err, cause)


def _unlink(p: _CancelCtx, child: _CancelCtx | _Listener) -> None:
    children = p._children
    if children is not None:
        children.pop(child, None)
        if not children:
            p._children = None


@final
class _ValueCtx(Context):
    __slots__ = ("_cc", "_key", "_parent", "_val")

    def __init__(self, parent: Context, key: object, val: object) -> None:
        self._parent = parent
        self._key = key
        self._val = val
        self._cc = _cc_of(parent)

    def done(self) -> Chan[None]:
        cc = self._cc
        return nil if cc is None else cc.done()

    def err(self) -> Canceled | DeadlineExceeded | None:
        cc = self._cc
        return None if cc is None else cc.err()

    def deadline(self) -> float | None:
        cc = self._cc
        return None if cc is None else cc._deadline

    def _name(self) -> str:
        return f"WithValue({self._key!r}, {self._val!r})"

    def __repr__(self) -> str:
        err = self.err()
        return f"<csp.context {self} {'live' if err is None else err}>"


@final
class _WithoutCancelCtx(_NeverDone):
    __slots__ = ("_parent",)

    _cc = None

    def __init__(self, parent: Context) -> None:
        self._parent = parent

    def _name(self) -> str:
        return "WithoutCancel"

    def __repr__(self) -> str:
        return f"<csp.context {self}>"


def _cc_of(ctx: Context) -> _CancelCtx | None:
    """The nearest cancellable context at or above ``ctx`` (None: never cancelled)."""
    if type(ctx) is _CancelCtx:
        return ctx
    if type(ctx) is _ValueCtx:
        return ctx._cc
    return None


def _check_parent(parent: object, who: str, name: str = "parent") -> Context:
    """``parent`` if it is a context; Go's text for None, else a ``TypeError`` naming
    ``who`` (the function) and the argument ``name``."""
    if parent is None:
        raise TypeError("cannot create context from nil parent")
    if not isinstance(parent, Context):
        raise TypeError(f"{who}: {name} must be a csp.context.Context, got {parent!r}")
    return parent


def _attach(c: _CancelCtx, parent: Context) -> None:
    """Go's propagateCancel: register ``c`` under its nearest cancellable ancestor, or
    cancel it at once if that ancestor is already cancelled."""
    pc = _cc_of(parent)
    if pc is None:
        return
    err = pc._err
    if err is not None:
        _cancel_tree(c, err, pc._cause if pc._cause is not None else err)
        return
    children = pc._children
    if children is None:
        pc._children = {c: None}
    else:
        children[c] = None
    c._registered = pc


# -- public constructors ---------------------------------------------------------


def background() -> Context:
    """The root context: never cancelled, no deadline, no values (Go: ``Background()``).

    Example: ``ctx, cancel = csp.context.with_cancel(csp.context.background())``.
    """
    return _background


def todo() -> Context:
    """A root context like :func:`background`, for code not yet given one (Go: ``TODO()``).

    Example: ``await fetch(csp.context.todo(), url)``.
    """
    return _todo


def with_cancel(parent: Context) -> tuple[Context, CancelFunc]:
    """A child of ``parent`` with its own ``cancel()`` (Go: ``WithCancel``).

    ``cancel()`` is idempotent and synchronous: when it returns, the child and every
    descendant are cancelled (``err()`` is :class:`Canceled`, ``done()`` closed) and the
    child is unlinked from ``parent``. Cancelling ``parent`` cancels the child; a child
    of a cancelled parent is born cancelled with the parent's error. May be called
    before a loop runs. Example::

        ctx, cancel = csp.context.with_cancel(parent)
        csp.go(worker, ctx)
        ...
        cancel()  # the worker sees ctx.done() closed
    """
    parent = _check_parent(parent, "with_cancel")
    c = _CancelCtx(parent, parent.deadline(), "WithCancel")
    _attach(c, parent)
    return c, c._user_cancel


def with_cancel_cause(
    parent: Context,
) -> tuple[Context, Callable[[BaseException | None], None]]:
    """Like :func:`with_cancel`, but ``cancel(cause)`` records why (Go 1.20:
    ``WithCancelCause``); read it with :func:`cause`. ``cancel(None)`` records
    :class:`Canceled`. ``err()`` is still :class:`Canceled`. Example::

        ctx, cancel = csp.context.with_cancel_cause(parent)
        cancel(ConnectionResetError("peer went away"))
        assert isinstance(csp.context.cause(ctx), ConnectionResetError)
    """
    parent = _check_parent(parent, "with_cancel_cause")
    c = _CancelCtx(parent, parent.deadline(), "WithCancel")
    _attach(c, parent)
    return c, c._user_cancel_cause


def with_deadline(parent: Context, deadline: float) -> tuple[Context, CancelFunc]:
    """A child that is cancelled at ``deadline`` (Go: ``WithDeadline``).

    ``deadline`` is in the running loop's clock (``loop.time()``); a loop must be
    running. If the parent's deadline is earlier, this is :func:`with_cancel` and
    ``deadline()`` reports the parent's. If ``deadline`` has passed, the child is born
    expired. On expiry ``err()`` is :class:`DeadlineExceeded`; an earlier ``cancel()``
    gives :class:`Canceled` and stops the timer. Example::

        loop = asyncio.get_running_loop()
        ctx, cancel = csp.context.with_deadline(parent, loop.time() + 5)
    """
    return _with_deadline("with_deadline", parent, deadline, False, None)


def with_deadline_cause(
    parent: Context, deadline: float, cause: BaseException | None
) -> tuple[Context, CancelFunc]:
    """:func:`with_deadline` whose expiry records ``cause`` (Go 1.21:
    ``WithDeadlineCause``); a manual ``cancel()`` records :class:`Canceled`.

    Example: ``with_deadline_cause(parent, loop.time() + 5, RuntimeError("slow"))``.
    """
    return _with_deadline("with_deadline_cause", parent, deadline, False, cause)


def _with_deadline(
    who: str, parent: Context, when: float, timeout: bool, cause: BaseException | None
) -> tuple[Context, CancelFunc]:
    """``with_deadline`` (``timeout``: ``when`` is seconds from now) on behalf of ``who``."""
    parent = _check_parent(parent, who)
    when = duration(who, "seconds" if timeout else "deadline", when)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + when if timeout else when
    pd = parent.deadline()
    if pd is not None and pd <= deadline:
        # The parent's deadline comes first: it alone decides (Go does the same).
        return with_cancel(parent)
    c = _CancelCtx(parent, deadline, "WithDeadline")
    c._dl_cause = cause
    c._loop = loop
    _attach(c, parent)
    if c._err is None:
        if deadline <= loop.time():
            c._cancel(DeadlineExceeded(), cause)
        else:
            c._handle = loop.call_at(deadline, _expire, c)
    return c, c._user_cancel


def with_timeout(parent: Context, seconds: float) -> tuple[Context, CancelFunc]:
    """``with_deadline(parent, loop.time() + seconds)`` (Go: ``WithTimeout``).

    Call ``cancel()`` when done so the timer does not outlive the work. Example::

        ctx, cancel = csp.context.with_timeout(parent, 0.5)
        try:
            await fetch(ctx, url)
        finally:
            cancel()
    """
    return _with_deadline("with_timeout", parent, seconds, True, None)


def with_timeout_cause(
    parent: Context, seconds: float, cause: BaseException | None
) -> tuple[Context, CancelFunc]:
    """:func:`with_timeout` whose expiry records ``cause`` (Go 1.21: ``WithTimeoutCause``).

    Example: ``with_timeout_cause(parent, 5, RuntimeError("backend too slow"))``.
    """
    return _with_deadline("with_timeout_cause", parent, seconds, True, cause)


def with_value(parent: Context, key: object, value: object) -> Context:
    """A child carrying ``value`` under ``key`` (Go: ``WithValue``).

    ``ctx.value(key)`` searches innermost first and compares keys with ``==``. A None
    key raises ``TypeError("nil key")``. Use a private object or class as the key so
    packages do not collide. Example::

        REQUEST_ID = object()
        ctx = csp.context.with_value(ctx, REQUEST_ID, "r-42")
        assert ctx.value(REQUEST_ID) == "r-42"
    """
    parent = _check_parent(parent, "with_value")
    if key is None:
        raise TypeError("nil key")
    return _ValueCtx(parent, key, value)


def without_cancel(parent: Context) -> Context:
    """A child that keeps ``parent``'s values but is never cancelled and has no
    deadline (Go 1.21: ``WithoutCancel``). Example::

        bg = csp.context.without_cancel(request_ctx)  # for work that outlives the request
    """
    return _WithoutCancelCtx(_check_parent(parent, "without_cancel"))


def cause(ctx: Context) -> BaseException | None:
    """Why ``ctx`` was cancelled (Go 1.20: ``context.Cause``).

    None while live; then the cause given to the first cancellation of ``ctx`` or an
    ancestor (``with_cancel_cause``, ``with_*_cause``), or ``ctx.err()`` when none was
    given. Example: ``if isinstance(cause(ctx), ConnectionResetError): ...``.
    """
    cc = _cc_of(_check_parent(ctx, "cause", "ctx"))
    return None if cc is None else cc._cause


# -- after_func -------------------------------------------------------------------


@final
class _AfterFunc(_Listener):
    __slots__ = ("_fn", "_pc", "_state")

    def __init__(self, fn: Callable[[], object]) -> None:
        self._fn = fn
        self._pc: _CancelCtx | None = None
        self._state = 0  # 0 waiting, 1 started, 2 stopped

    def _parent_done(self, err: Canceled | DeadlineExceeded, cause: BaseException) -> None:
        self._pc = None
        if self._state == 0:
            self._state = 1
            _start_func(self._fn)

    def stop(self) -> bool:
        if self._state != 0:
            return False
        self._state = 2
        pc = self._pc
        if pc is not None:
            self._pc = None
            _unlink(pc, self)
        return True


def _start_func(fn: Callable[[], object]) -> None:
    from csp._time import _run_func

    loop = _compat.get_running_loop()
    if loop is not None:
        loop.call_soon(_run_func, fn, loop)
        return
    res = fn()  # no loop: nothing else could run it
    if asyncio.iscoroutine(res):
        res.close()
        raise RuntimeError("context.after_func: an async function needs a running loop")


def after_func(ctx: Context, fn: Callable[[], object]) -> Callable[[], bool]:
    """Run ``fn()`` once ``ctx`` is done (Go 1.21: ``context.AfterFunc``).

    ``fn`` runs from the loop (a coroutine function runs as a goroutine), at once if
    ``ctx`` is already done. Returns ``stop()``, which returns True iff it prevented
    the call; it does not wait for a running ``fn``. Example::

        stop = csp.context.after_func(ctx, conn.close)
        try:
            await serve(conn)
        finally:
            stop()
    """
    pc = _cc_of(_check_parent(ctx, "context.after_func", "ctx"))
    if not callable(fn):
        raise TypeError(f"context.after_func: fn must be callable, got {fn!r}")
    a = _AfterFunc(fn)
    if pc is not None:
        pc._check_loop()
        if pc._err is not None:
            a._parent_done(pc._err, pc._cause or pc._err)
        else:
            children = pc._children
            if children is None:
                pc._children = {a: None}
            else:
                children[a] = None
            a._pc = pc
    return a.stop


# -- notify_context (Go: signal.NotifyContext) --------------------------------------
#
# Strategy. Signal handlers are process-wide, so the diversion is too: ``_diverted``
# maps each signal some notify context listens to onto the Python-level handler it
# replaced and the registrations listening. The first registration of a signal saves
# ``signal.getsignal()`` and installs ``_on_signal``; the last ``stop()`` puts the saved
# handler back, so stops in any order restore exactly what was there. Python runs
# ``_on_signal`` on the main thread between two bytecodes, maybe in the middle of the
# loop or of a channel operation, so it touches nothing but a flag and a socket: each
# registration owns a socket pair whose reading end its loop watches, and the reader
# callback, an ordinary loop callback, cancels the context. Watching that socket is
# also what tells ``csp.run``'s deadlock check that the loop still waits for something
# from outside, so a main that only waits for ``ctx.done()`` is not reported.
#
# ``loop.add_signal_handler`` is not used: ``remove_signal_handler`` resets the signal
# to ``SIG_DFL`` / ``default_int_handler`` instead of the handler it replaced, it would
# silently replace a handler the program registered on the loop, and uvloop's does
# nothing once the loop has stopped running.
#
# Invariants:
#   * a signal is in ``_diverted`` iff a registration that has not stopped lists it
#     (registrations of closed loops, whose stop() was forgotten, are dropped when
#     the signal arrives or another registration of it stops);
#   * ``_Diversion.regs`` is replaced, never mutated, so ``_on_signal``, which may run
#     in the middle of an update, iterates a consistent tuple;
#   * a registration's context is cancelled by a signal only from its loop.


@final
class _SignalReceived(Exception):
    """The cause of a notify context cancelled by a signal (Go 1.26: the error that
    ``context.Cause`` returns then). ``str()`` is Go's text, for example ``interrupt
    signal received``; ``signal`` is the signal."""

    def __init__(self, sig: int) -> None:
        super().__init__(f"{_signal_text(sig)} signal received")
        self.signal = _as_signal(sig)

    def __reduce__(self) -> tuple[type[_SignalReceived], tuple[int]]:
        return type(self), (int(self.signal),)


def _as_signal(sig: int) -> int:
    """``sig`` as a ``signal.Signals`` member if it has a name (real-time signals do not)."""
    try:
        return signal.Signals(sig)
    except ValueError:
        return sig


def _signal_text(sig: int) -> str:
    """Go's name of a signal (``syscall.Signal.String()``): ``interrupt``,
    ``terminated``, ``user defined signal 1``: the C library's description, lowercased
    as Go spells it."""
    text = signal.strsignal(sig) or f"signal {int(sig)}"
    text = text.split(":", 1)[0]  # some C libraries (macOS) append ": <number>"
    return text[:1].lower() + text[1:]


@final
class _Diversion:
    """A signal diverted to notify contexts: the handler to put back, who listens."""

    __slots__ = ("prev", "regs")

    def __init__(self, prev: Any, reg: _Notify) -> None:
        self.prev = prev
        self.regs: tuple[_Notify, ...] = (reg,)


_diverted: dict[int, _Diversion] = {}


@final
class _Notify:
    """One :func:`notify_context`: its context, its loop, its signals, and the socket
    pair that carries a signal from ``_on_signal`` to the loop."""

    __slots__ = ("_ctx", "_got", "_loop", "_rsock", "_signals", "_stopped", "_wsock")

    def __init__(
        self, ctx: _CancelCtx, loop: asyncio.AbstractEventLoop, signals: tuple[int, ...]
    ) -> None:
        self._ctx = ctx
        self._loop = loop
        self._signals = signals
        self._got: int | None = None  # the first signal that arrived
        self._stopped = False
        self._rsock, self._wsock = socket.socketpair()
        self._rsock.setblocking(False)
        self._wsock.setblocking(False)

    def _poke(self, sig: int) -> bool:
        """From the signal handler: note ``sig`` and wake the loop. False if the loop
        is closed (nothing will ever read the socket)."""
        if self._loop.is_closed():
            return False
        if self._got is None:
            self._got = sig
            try:
                self._wsock.send(b"\0")
            except OSError:  # closed by a stop() this handler interrupted
                pass
        return True

    def _on_readable(self) -> None:
        """Loop callback: a signal arrived; cancel the context with Go's cause."""
        try:
            while self._rsock.recv(64):
                pass
        except OSError:  # BlockingIOError: drained
            pass
        sig, ctx = self._got, self._ctx
        if sig is not None and ctx._err is None:
            ctx._cancel(Canceled(), _SignalReceived(sig))

    def stop(self) -> None:
        """Cancel the context and give the signals back to the handlers from before.

        Idempotent; call it on the main thread (``RuntimeError`` otherwise: only the
        main thread may set signal handlers). Go: the ``stop`` of ``NotifyContext``.
        """
        if self._stopped:
            return
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(
                "notify_context: stop() must be called on the main thread "
                "(it restores signal handlers)"
            )
        self._stopped = True
        self._ctx._user_cancel()
        for sig in self._signals:
            _undivert(sig, self)
        if not self._loop.is_closed():
            self._loop.remove_reader(self._rsock)
        self._rsock.close()
        self._wsock.close()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler of every diverted signal."""
    d = _diverted.get(signum)
    heard = False
    if d is not None:
        for reg in d.regs:
            heard = reg._poke(signum) or heard
    if not heard:
        # Every listener's loop is closed and none called stop(): nothing will ever
        # read this signal. Hand it back to the handler from before, and have the OS
        # deliver it again, to that handler.
        _give_back(signum)
        signal.raise_signal(signum)


def _give_back(sig: int) -> None:
    """Put back the handler ``sig`` had before it was diverted (unless someone else
    replaced ``_on_signal`` since: theirs stays) and forget the diversion."""
    d = _diverted.get(sig)
    if d is not None:
        prev = d.prev
    else:  # _on_signal put back by hand after its diversion ended: use the default
        prev = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
    if signal.getsignal(sig) is _on_signal:
        signal.signal(sig, prev)
    # Forgotten only now: a signal that interrupts the lines above still finds it.
    _diverted.pop(sig, None)


def _divert(sig: int, reg: _Notify) -> None:
    d = _diverted.get(sig)
    if d is None:
        _diverted[sig] = _Diversion(signal.getsignal(sig), reg)
        signal.signal(sig, _on_signal)
    else:
        d.regs = (*d.regs, reg)


def _undivert(sig: int, reg: _Notify) -> None:
    d = _diverted.get(sig)
    if d is None or reg not in d.regs:
        return  # already given back by _on_signal (the loop had closed)
    # Registrations of closed loops go too: they can never hear the signal again, and a
    # forgotten stop() must not keep it diverted after the last live one stops.
    regs = tuple(r for r in d.regs if r is not reg and not r._loop.is_closed())
    if regs:
        d.regs = regs
    else:
        _give_back(sig)


def _check_signals(signals: tuple[object, ...]) -> tuple[int, ...]:
    valid = signal.valid_signals()
    uncatchable = {getattr(signal, n) for n in ("SIGKILL", "SIGSTOP") if hasattr(signal, n)}
    out: list[int] = []
    for s in signals:
        if isinstance(s, bool) or not isinstance(s, int):
            raise TypeError(
                f"notify_context: a signal is an int or signal.Signals, not {type(s).__name__}"
            )
        if s not in valid:
            raise ValueError(f"notify_context: invalid signal number {s}")
        if s in uncatchable:
            raise ValueError(f"notify_context: {signal.Signals(s).name} cannot be caught")
        sig = _as_signal(s)
        if sig not in out:
            out.append(sig)
    for sig in out:
        if sig in _diverted:
            continue
        prev = signal.getsignal(sig)
        if prev is None:
            raise RuntimeError(
                f"notify_context: the handler of {_signal_name(sig)} was not installed from "
                "Python, so it could not be restored"
            )
        if _loop_owned(prev):
            raise RuntimeError(
                f"notify_context: {_signal_name(sig)} is handled by loop.add_signal_handler(); "
                "remove that handler first (a loop's handler cannot be set aside and restored)"
            )
    return tuple(out)


def _signal_name(sig: int) -> str:
    return sig.name if isinstance(sig, signal.Signals) else f"signal {sig}"


def _loop_owned(handler: object) -> bool:
    """Is ``handler`` the stand-in an event loop installs for ``add_signal_handler``
    (the loop runs the real handler, which notify_context could not set aside)?"""
    unix_events = sys.modules.get("asyncio.unix_events")
    if unix_events is not None and handler is getattr(unix_events, "_sighandler_noop", None):
        return True
    owner = getattr(handler, "__self__", None)  # uvloop: a bound method of the loop
    return isinstance(owner, asyncio.AbstractEventLoop) and not owner.is_closed()


def notify_context(parent: Context, *signals: int) -> tuple[Context, CancelFunc]:
    """A child of ``parent`` that is cancelled when one of ``signals`` arrives (Go:
    ``signal.NotifyContext``); with no signals, ``SIGINT`` (Ctrl-C).

    Returns ``(ctx, stop)``. ``ctx`` is done when a signal arrives, when ``stop()`` is
    called or when ``parent`` is done, whichever comes first; ``ctx.err()`` is
    :class:`Canceled` in every case. After a signal, :func:`cause` is an exception
    whose ``str()`` is Go 1.26's text, such as ``interrupt signal received``, with the
    signal in its ``signal`` attribute (Go before 1.26 gave no cause: ``Canceled``).

    From the call until ``stop()``, the signals only cancel ``ctx``: the handler
    installed before (KeyboardInterrupt, ``asyncio.run``'s or ``csp.run``'s Ctrl-C
    handling, the default action, a ``signal.signal`` handler) does not run. As in Go
    that stays so once ``ctx`` is done, also when it was born done: a second Ctrl-C is
    swallowed until ``stop()``; call ``stop()`` as soon as ``ctx`` is done if a second
    one should interrupt as usual. Every live notify context of a signal is cancelled
    by it. ``stop()`` cancels ``ctx`` if it is live and puts back exactly the handler
    that was there before (``signal.getsignal`` returns it again; with several notify
    contexts on one signal, the last ``stop()`` does, in whatever order they stop).
    ``stop()`` is idempotent and must be called on the main thread; use ``try: ...
    finally: stop()`` (Go: ``defer stop()``). If the loop closes without ``stop()``,
    the next such signal goes to the handler from before, which is put back.

    Call it from a coroutine on the main thread (Python runs signal handlers only
    there): otherwise ``RuntimeError``. Signals are ints or ``signal.Signals``
    (``TypeError`` otherwise; ``ValueError`` for an invalid number, ``SIGKILL`` or
    ``SIGSTOP``). A signal the loop handles (``loop.add_signal_handler``) cannot be set
    aside and restored: ``RuntimeError``. Until ``stop()``, the loop waits for the
    signal as for I/O, so under ``csp.run`` a main that waits only for ``ctx.done()``
    is not a deadlock. Example::

        async def main() -> None:
            ctx, stop = csp.context.notify_context(
                csp.context.background(), signal.SIGINT, signal.SIGTERM
            )
            try:
                await serve(ctx)  # until Ctrl-C or SIGTERM closes ctx.done()
            finally:
                stop()
    """
    parent = _check_parent(parent, "notify_context")
    sigs = _check_signals(signals or (signal.SIGINT,))
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "notify_context must be called on the main thread (Python runs signal handlers "
            "only there)"
        )
    loop = _compat.get_running_loop()
    if loop is None:
        raise RuntimeError("notify_context needs a running event loop: call it from a coroutine")
    names = " ".join(_signal_text(s) for s in sigs)
    c = _CancelCtx(parent, parent.deadline(), f"{_NOTIFY_OPEN}, [{names}])")
    _attach(c, parent)  # born cancelled if parent is; the signals are diverted anyway (Go)
    reg = _Notify(c, loop, sigs)
    try:
        loop.add_reader(reg._rsock, reg._on_readable)
    except BaseException:
        reg._rsock.close()
        reg._wsock.close()
        raise
    for sig in sigs:
        _divert(sig, reg)
    return c, reg.stop


# -- the bridge to asyncio cancellation ------------------------------------------


class _State(enum.Enum):
    CREATED = "created"
    ENTERED = "active"
    EXPIRING = "expiring"
    EXPIRED = "expired"
    EXITED = "finished"


@final
class Scope(_Listener):
    """An ``async with`` block that is cancelled when a context is done; see :func:`scope`.

    Example::

        async with csp.context.scope(ctx) as sc:
            data = await reader.read(1024)   # raises ctx.err() if ctx ends first
        assert not sc.expired()
    """

    __slots__ = ("_ctx", "_handle", "_pc", "_state", "_task")

    def __init__(self, ctx: Context) -> None:
        self._ctx = _check_parent(ctx, "scope", "ctx")
        self._state = _State.CREATED
        self._task: asyncio.Task[Any] | None = None
        self._handle: asyncio.Handle | None = None
        self._pc: _CancelCtx | None = None

    @property
    def ctx(self) -> Context:
        """The context this scope follows."""
        return self._ctx

    def expired(self) -> bool:
        """True if the context ended while the block ran and the scope cancelled it."""
        return self._state in (_State.EXPIRING, _State.EXPIRED)

    def __repr__(self) -> str:
        return f"<csp.context.Scope [{self._state.value}] ctx={self._ctx}>"

    async def __aenter__(self) -> Scope:
        if self._state is not _State.CREATED:
            raise RuntimeError("scope has already been entered")
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("scope should be used inside a task")
        pc = _cc_of(self._ctx)
        if pc is not None:
            pc._check_loop()
        self._state = _State.ENTERED
        self._task = task
        if pc is not None:
            if pc._err is not None:
                # Like asyncio.timeout() with a past deadline: cancel at the block's
                # first suspension, from the loop, never from inside the task.
                self._handle = task.get_loop().call_soon(self._on_done)
            else:
                children = pc._children
                if children is None:
                    pc._children = {self: None}
                else:
                    children[self] = None
                self._pc = pc
        return self

    def _parent_done(self, err: Canceled | DeadlineExceeded, cause: BaseException) -> None:
        # Called synchronously by cancel(), maybe from our own task (the block cancels
        # its own context). Task.cancel() on the running task would leave a pending
        # cancellation behind if the block then ended without suspending, so from our
        # own task go through the loop, as asyncio.timeout() does.
        self._pc = None
        if self._state is not _State.ENTERED:
            return
        task = self._task
        assert task is not None
        loop = task.get_loop()
        running = _compat.get_running_loop()
        if running is not loop:  # cancel() from another thread: hand it to our loop
            loop.call_soon_threadsafe(self._on_done)
        elif asyncio.current_task(loop) is task:
            self._handle = loop.call_soon(self._on_done)
        else:
            self._on_done()

    def _on_done(self) -> None:
        self._handle = None
        if self._state is not _State.ENTERED:
            return
        assert self._task is not None
        self._task.cancel()
        self._state = _State.EXPIRING

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        h = self._handle
        if h is not None:
            self._handle = None
            h.cancel()
        pc = self._pc
        if pc is not None:
            self._pc = None
            _unlink(pc, self)
        if self._state is _State.EXPIRING:
            self._state = _State.EXPIRED
            assert self._task is not None
            if self._task.uncancel() == 0 and exc_type is asyncio.CancelledError:
                # No other cancellation is outstanding: this one was ours.
                err = self._ctx.err()
                assert err is not None
                c = cause(self._ctx)
                # A fresh instance per exit, so tracebacks do not pile up on the shared
                # err() object; a custom cause (with_cancel_cause) is chained.
                raise type(err)() from (c if c is not err else exc_val)
        elif self._state is _State.ENTERED:
            self._state = _State.EXITED


def scope(ctx: Context) -> Scope:
    """Bridge a context to asyncio cancellation: ``async with csp.context.scope(ctx):``.

    The block runs normally while ``ctx`` is live. When ``ctx`` is cancelled or
    expires (or already is, at entry), the block is cancelled at its current await,
    exactly as ``asyncio.timeout()`` does it, and the ``CancelledError`` is turned into
    an instance of ``type(ctx.err())`` (:class:`Canceled` or :class:`DeadlineExceeded`,
    a ``TimeoutError``) raised out of the block. So ordinary asyncio code (a socket
    read, an HTTP call, ``asyncio.Event.wait``) stops when the context ends. The task's
    ``cancelling()`` count is left as it was (``uncancel()`` accounting as in
    ``asyncio.timeout()``), so nested timeouts and scopes, and a cancellation of the
    task from outside, keep working: if someone else also cancelled the task, the
    ``CancelledError`` propagates instead. Use it inside a task; single use. Example::

        async def read_line(ctx: csp.context.Context, reader: asyncio.StreamReader) -> bytes:
            async with csp.context.scope(ctx):
                return await reader.readline()   # raises Canceled when ctx is cancelled

        ctx, cancel = csp.context.with_cancel(csp.context.background())
        csp.go(read_line, ctx, reader)
        cancel()   # the pending readline() is cancelled; read_line raises Canceled
    """
    return Scope(ctx)
