"""Virtual time: the loop of a testing bubble (``csp.testing.run``; Go: ``testing/synctest``).

Strategy. The bubble's loop is csp.run's asyncio loop with its own clock: ``time()``
returns ``now``, which starts at 0.0, and every timer source reads it (asyncio's
``call_at``/``call_later``, hence ``asyncio.sleep`` and ``asyncio.timeout``; csp's
timers and context deadlines, which ask ``loop.time()``). The clock moves in one place
only: the loop's selector. asyncio asks it to wait (``select(timeout)`` with
``timeout > 0``) exactly when nothing is ready to run and the next timer is in the
future; :class:`_JumpSelector` then polls for I/O without waiting, and if nothing is
ready jumps ``now`` to that timer instead of sleeping. So the clock never moves while
anything can run (a goroutine that computes holds it where it is), timers fire in
order at exactly their times, and real sockets still work: ready I/O is served before
any jump. With no timer pending asyncio waits without a timeout, as usual; when every
goroutine is then blocked on csp, csp.run's deadlock watch reports it.

uvloop's clock is libuv's and cannot be replaced, so a bubble runs on asyncio's loop.

Invariants:
  * ``now`` never decreases, and changes only in :meth:`_JumpSelector.select` when
    the loop was about to wait for its earliest timer with nothing ready to run;
  * after a jump, ``now`` is exactly that timer's ``when()`` (no float drift), or the
    wait's end if asyncio asked for a shorter one.
"""

from __future__ import annotations

import selectors
from typing import Any

from csp import _compat
from csp._deadlock import AsyncioLoop

__all__ = ["VirtualTimeLoop"]


class _JumpSelector:
    """The loop's selector, wrapped: a wait that would time out jumps the clock."""

    def __init__(self, inner: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._inner = inner
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None or timeout <= 0:
            return self._inner.select(timeout)
        events = self._inner.select(0)  # I/O ready now is served first, no jump
        if events:
            return events
        loop = self._loop
        target = loop.now + timeout
        queues = _compat.loop_queues(loop)
        assert queues is not None
        scheduled = queues[1]  # (asyncio dropped cancelled ones from its head)
        if scheduled:  # land exactly on the next timer
            target = min(target, scheduled[0].when())
        if target > loop.now:
            loop.now = target
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class VirtualTimeLoop(AsyncioLoop):
    """csp.run's asyncio loop with a virtual clock starting at 0.0 (see the module)."""

    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(_JumpSelector(selectors.DefaultSelector(), self))

    def time(self) -> float:
        """The virtual clock: seconds since the bubble started, in virtual time."""
        return self.now

    def __repr__(self) -> str:
        return f"<csp testing loop time={self.now!r} running={self.is_running()}>"
