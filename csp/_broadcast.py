"""``csp.Broadcast``: one channel, many subscribers, each value to every subscriber.

Strategy. Each subscription is a receive-only channel of csp's own (a
:class:`~csp._chan._BaseChan` with ``cap`` slots), so its receives, ``async for`` and
select cases are a channel's. ``send`` is all-or-nothing: it looks whether *every*
current subscriber has room (a free buffer slot, or for ``cap=0`` a receiver parked
on it) and, if so, delivers to all of them in one step without yielding, so that
values reach every subscriber in the same order; if not, it parks on the broadcast's
own queue and looks again whenever a subscriber makes room (a receive that frees a
slot, a receiver that parks, an unsubscribe). In the lagging mode
(``overflow="drop_oldest"``) there is always room: a full subscriber loses its oldest
value and ``lagged`` counts it.

Invariants:
  * ``_senders`` holds only pending waiters, and is empty when the broadcast is closed
    or lagging (a lagging send never parks);
  * a subscription's own send queue is always empty (only ``Broadcast.send`` fills
    it, and only when it has room);
  * a send that returned reached every subscriber that was subscribed at that
    instant; one that raised (cancelled, closed) reached none.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, final

from csp._chan import BLOCK, CLOSED, _BaseChan
from csp._check import count
from csp._errors import ChannelError, ClosedChannelError
from csp._waiter import Waiter, budget, owed, prelude
from csp._waitq import WaitQ

__all__ = ["Broadcast", "Subscription"]

T = TypeVar("T")


class _SubQ(WaitQ):
    """A subscription's receive queue: a receiver parking there is room (``cap=0``)."""

    __slots__ = ("bcast",)

    def __init__(self, bcast: Broadcast[Any]) -> None:
        super().__init__()
        self.bcast = bcast

    def push(self, n: Any) -> None:
        super().push(n)
        if self.bcast._senders.head is not None:
            self.bcast._room()


@final
class Subscription(_BaseChan[T]):
    """A subscriber's receive-only channel (``Broadcast.subscribe()``): ``recv``,
    ``recv_ok``, ``async for``, select cases, ``len``, ``cap``; ``lagged`` counts the
    values it lost in the lagging mode. ``send`` and ``close`` raise
    ``ChannelError`` (unsubscribe through the broadcast)."""

    __slots__ = ("_bcast",)

    def __init__(self, bcast: Broadcast[T], cap: int) -> None:
        super().__init__(cap)
        self._bcast = bcast
        self._recvq = _SubQ(bcast)

    def _try_recv(self) -> Any:
        r = _BaseChan._try_recv(self)
        if self._bcast._senders.head is not None and r is not BLOCK and r is not CLOSED:
            self._bcast._room()  # a slot was freed
        return r

    def _has_room(self) -> bool:
        return self._recvq.head is not None or len(self._buf) < self._cap

    def _put(self, value: Any) -> None:
        """Deliver one value (precondition: room, or the lagging mode)."""
        if self._recvq.head is not None and self._recvq.give(value):
            return
        if len(self._buf) >= self._cap:  # lagging: the oldest makes room
            self._buf.popleft()
            self._dropped += 1
        self._buf.append(value)

    @property
    def lagged(self) -> int:
        """Values this subscriber lost because it lagged (``overflow="drop_oldest"``)."""
        return self._dropped

    async def send(self, value: T) -> None:
        raise ChannelError("send to receive-only channel")

    def send_nowait(self, value: T) -> None:
        raise ChannelError("send to receive-only channel")

    def close(self) -> None:
        raise ChannelError("close of receive-only channel")

    def __repr__(self) -> str:
        r, _ = self._waiting()
        state = " closed" if self._closed else ""
        return (f"<csp.Broadcast subscription cap={self._cap} len={len(self._buf)} "
                f"recv_waiters={r} lagged={self._dropped}{state}>")


@final
class Broadcast(Generic[T]):
    """One channel, many subscribers (tokio's ``broadcast``; trio #987).

    ``sub = b.subscribe()`` returns a receive-only channel that gets every value sent
    after it subscribed, in order. ``await b.send(v)`` completes once every current
    subscriber has room (``cap`` buffered values each; with ``cap=0``, a receiver
    waiting on it): the slowest subscriber sets the pace, and the value reaches all of
    them at once, in the same order for all; a cancelled send reached none. With
    ``overflow="drop_oldest"`` (``cap >= 1``) a send never waits: a lagging subscriber
    loses its oldest value and ``sub.lagged`` counts them. ``b.unsubscribe(sub)``
    closes that subscription (it drains what it holds, then ``(None, False)``);
    ``b.close()`` closes every one, and sends after or waiting at it raise
    ``ClosedChannelError``. Example::

        prices = csp.Broadcast[float](cap=16)
        fast, slow = prices.subscribe(), prices.subscribe()
        await prices.send(101.5)        # both receive it
    """

    __slots__ = ("_cap", "_closed", "_lagging", "_senders", "_subs")

    def __init__(self, cap: int = 0, overflow: str = "block") -> None:
        if type(cap) is not int:
            cap = count("Broadcast", "cap", cap)
        if cap < 0:
            raise ValueError(f"Broadcast: negative capacity {cap}")
        if overflow not in ("block", "drop_oldest"):
            raise ValueError(
                f"Broadcast: overflow must be 'block' or 'drop_oldest', got {overflow!r}")
        if overflow == "drop_oldest" and cap < 1:
            raise ValueError(f"Broadcast: overflow='drop_oldest' needs cap >= 1, got {cap}")
        self._cap = cap
        self._lagging = overflow == "drop_oldest"
        self._closed = False
        self._subs: dict[Subscription[T], None] = {}  # in subscription order
        self._senders = WaitQ()

    def subscribe(self) -> Subscription[T]:
        """A new subscription: every value sent from now on (a closed broadcast gives
        a closed subscription)."""
        sub = Subscription(self, self._cap)
        if self._closed:
            _BaseChan.close(sub)
        else:
            self._subs[sub] = None
        return sub

    def unsubscribe(self, sub: Subscription[T]) -> None:
        """Close ``sub``: it drains what it holds, then ``(None, False)``; a send that
        waited only for it goes on. Unsubscribing twice does nothing."""
        if self._subs.pop(sub, 0) is None:
            _BaseChan.close(sub)
            self._room()

    async def send(self, value: T) -> None:
        """Send ``value`` to every current subscriber (see the class docstring)."""
        while True:
            budget.left -= 1
            if budget.left <= 0 or owed:  # (the budget guard; an owed cancellation is
                await prelude()  # raised here, before the send takes effect)
            if self._closed:
                raise ClosedChannelError("send on closed channel")
            subs = self._subs
            if not self._lagging:
                for s in subs:
                    if not s._has_room():
                        break
                else:
                    s = None  # every subscriber has room
            else:
                s = None
            if s is None:
                for s in subs:  # (nothing runs meanwhile: _put only queues wake-ups)
                    s._put(value)
                return
            w = Waiter("chan send")
            self._senders.push(w)
            await w  # room was made (or it closed): look again

    def _room(self) -> None:
        """A subscriber made room: every parked sender looks again (in FIFO order)."""
        if self._senders.head is not None:
            self._senders.complete_all(None)

    def close(self) -> None:
        """Close every subscription and refuse further sends (Go: ``close``)."""
        if self._closed:
            raise ClosedChannelError("close of closed channel")
        self._closed = True
        subs, self._subs = list(self._subs), {}
        for s in subs:
            _BaseChan.close(s)
        self._senders.complete_all(None, False)

    @property
    def cap(self) -> int:
        """Each subscriber's buffer size."""
        return self._cap

    def __len__(self) -> int:
        """Current subscribers."""
        return len(self._subs)

    def _invariants(self) -> None:
        self._senders._invariants()
        assert not (self._closed or self._lagging) or self._senders.head is None
        for s in self._subs:
            assert s._sendq.head is None
            s._invariants()

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        mode = " overflow=drop_oldest" if self._lagging else ""
        return (f"<csp.Broadcast cap={self._cap}{mode} subscribers={len(self._subs)} "
                f"send_waiters={self._senders.count()}{state}>")
