"""WaitQ: the FIFO of parked operations that channels, select and the sync primitives
share, with O(1) unlink.

A node is anything with ``q``, ``prev`` and ``next`` slots: a :class:`~csp._waiter.Waiter`
(one parked operation, in one queue) or a select's per-case node (one select, in
several queues). Because a withdrawn operation unlinks its nodes at once (Go unlinks a
cancelled waiter, and a select's losing cases when it wakes), a queue holds only live
operations, and nothing a finished operation offered stays referenced.

Invariants:
  * ``head is None`` iff ``tail is None``;
  * a node is linked here iff ``node.q is self``; then ``prev``/``next`` link it to its
    neighbours (None at the ends), and an unlinked node has all three None;
  * every linked node belongs to a PENDING operation (its owner unlinks it before
    completing or withdrawing it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["WaitQ"]


class WaitQ:
    """A doubly linked FIFO of waiter nodes. ``len()`` walks the queue (O(n), for
    reprs and tests); the hot paths test ``q.head is not None`` (no Python call)."""

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
