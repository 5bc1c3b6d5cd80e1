"""WaitQ: the FIFO of parked operations that channels, select and the sync primitives
share, with O(1) unlink.

A node is anything with ``q``, ``prev`` and ``next`` slots, a ``value`` (what a parked
sender offers) and ``complete(value, ok) -> bool``: a :class:`~csp._waiter.Waiter`
(one parked operation, in one queue) or a select's per-case node (one select, in
several queues). Because a withdrawn operation unlinks its nodes at once (Go unlinks a
cancelled waiter, and a select's losing cases when it wakes), a queue holds only live
operations, and nothing a finished operation offered stays referenced.

A partner hands something over with :meth:`give`, :meth:`take` or
:meth:`complete_all`: they skip (and withdraw) the nodes whose task can never run again
(its loop was closed while it was parked: ``complete`` answers False), so a value, a
lock or a grant always reaches a task that can still run, or stays with the partner.

Invariants:
  * ``head is None`` iff ``tail is None``;
  * a node is linked here iff ``node.q is self``; then ``prev``/``next`` link it to its
    neighbours (None at the ends), and an unlinked node has all three None;
  * a queue holds only pending entries: every linked node belongs to a PENDING
    operation (whoever completes or withdraws it unlinks it first), so a finished
    operation is referenced by no queue, nor is anything it offered.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from csp import _mode

__all__ = ["WaitQ"]


class _WaitQCore:
    """The links and the hand-over methods. Its compiled twin is ``WaitQCore`` in
    ``csp/_speedups.c`` (see csp._mode); the rest of the queue is :class:`WaitQ`."""

    __slots__ = ("head", "tail")

    def __init__(self) -> None:
        self.head: Any = None
        self.tail: Any = None

    def push(self, n: Any) -> None:
        """Append ``n`` at the tail. Precondition: ``n`` is in no queue."""
        t = self.tail
        n.q = self
        n.prev = t
        n.next = None
        if t is None:
            self.head = n
        else:
            t.next = n
        self.tail = n

    def pop(self) -> Any:
        """Unlink and return the head, or None if the queue is empty."""
        n = self.head
        if n is None:
            return None
        nxt = n.next
        self.head = nxt
        if nxt is None:
            self.tail = None
        else:
            nxt.prev = None
        n.q = n.next = None
        return n

    def give(self, value: Any) -> bool:
        """Complete the longest-waiting node that can still run with ``value`` (a
        receiver gets it; ``None`` grants a lock): True if one took it, False if the
        queue ran out (nodes of dead tasks met on the way are withdrawn)."""
        n = self.head
        while n is not None:
            nxt = n.next  # (the head unlinked inline: pop without a call)
            self.head = nxt
            if nxt is None:
                self.tail = None
            else:
                nxt.prev = None
            n.q = n.next = None
            if n.complete(value):
                return True
            n = self.head
        return False

    def take(self, default: Any) -> Any:
        """Complete the longest-waiting sender that can still run and return the value
        it offered; ``default`` if the queue ran out (dead senders are withdrawn: their
        send did not take effect)."""
        n = self.head
        while n is not None:
            nxt = n.next  # (as in give)
            self.head = nxt
            if nxt is None:
                self.tail = None
            else:
                nxt.prev = None
            n.q = n.next = None
            v = n.value  # (read first: completing lets go of it)
            if n.complete(None):
                return v
            n = self.head
        return default

    def unlink(self, n: Any) -> None:
        """Take ``n`` out. Precondition: ``n.q is self``."""
        p, nxt = n.prev, n.next
        if p is None:
            self.head = nxt
        else:
            p.next = nxt
        if nxt is None:
            self.tail = p
        else:
            nxt.prev = p
        n.q = n.prev = n.next = None



if not TYPE_CHECKING:
    _speedups = _mode.speedups()
    if _speedups is not None:
        _WaitQCore = _speedups.WaitQCore


class WaitQ(_WaitQCore):
    """A doubly linked FIFO of waiter nodes. ``len()`` walks the queue (O(n), for
    reprs and tests); the hot paths test ``q.head is not None`` (no Python call)."""

    __slots__ = ()

    def complete_all(self, value: Any, ok: bool = True) -> int:
        """Empty the queue, completing every node with ``value, ok`` (close, broadcast,
        release all); return how many could still run (the others are withdrawn)."""
        done = 0
        n = self.pop()
        while n is not None:
            if n.complete(value, ok):
                done += 1
            n = self.pop()
        return done

    def __iter__(self) -> Iterator[Any]:
        n = self.head
        while n is not None:
            nxt = n.next
            yield n
            n = nxt

    def count(self) -> int:
        """How many nodes are linked (O(n): for reprs and tests)."""
        return sum(1 for _ in self)

    __len__ = count

    def __bool__(self) -> bool:
        return self.head is not None

    def _invariants(self) -> None:
        assert (self.head is None) == (self.tail is None)
        prev = None
        for n in self:
            assert n.q is self and n.prev is prev
            prev = n
        assert prev is self.tail

    def __repr__(self) -> str:
        return f"<csp.WaitQ len={self.count()}>"
