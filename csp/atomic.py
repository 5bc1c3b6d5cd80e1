"""Atomic values (Go: package ``sync/atomic``): ``Int64``, ``Bool`` and ``Value``.

Strategy. Each object keeps its value in one attribute and one ``threading.Lock``.
A load is a single attribute read, which is atomic in Python; every operation that
writes (store, swap, compare-and-swap, add) takes the lock, so read-modify-write
steps are indivisible and all operations are linearizable (Go's atomics are
sequentially consistent). The objects are safe to share between OS threads and
event loops; they never block on anything but that short lock, so they are plain
calls, not coroutines.

``Int64`` wraps around at 64 bits like Go's two's-complement ``int64``:
``Int64(2**63 - 1).add(1)`` returns ``-2**63``. Example::

    requests = csp.atomic.Int64()
    requests.add(1)                      # from any thread or goroutine
    print(requests.load())               # 1
"""

from __future__ import annotations

import threading
from operator import index
from typing import Generic, TypeVar, final

__all__ = ["Bool", "Int64", "Value"]

T = TypeVar("T")

_MASK = (1 << 64) - 1
_SIGN = 1 << 63


def _wrap(v: int) -> int:
    """``v`` reduced to a signed 64-bit integer (two's complement)."""
    v = index(v) & _MASK
    return v - (1 << 64) if v & _SIGN else v


@final
class Int64:
    """An atomic signed 64-bit integer (Go: ``atomic.Int64``).

    ``load()``, ``store(v)``, ``swap(v) -> old``, ``compare_and_swap(old, new) ->
    bool`` and ``add(delta) -> new``. Arithmetic wraps around at 64 bits, as in Go.
    Safe from several OS threads at once. Example::

        hits = csp.atomic.Int64()
        hits.add(1)
        assert hits.load() == 1
    """

    __slots__ = ("_lock", "_v")

    def __init__(self, v: int = 0) -> None:
        self._v = _wrap(v)
        self._lock = threading.Lock()

    def load(self) -> int:
        """The current value."""
        return self._v

    def store(self, v: int) -> None:
        """Set the value to ``v`` (wrapped to 64 bits)."""
        v = _wrap(v)
        with self._lock:
            self._v = v

    def swap(self, v: int) -> int:
        """Set the value to ``v`` and return the previous value."""
        v = _wrap(v)
        with self._lock:
            old = self._v
            self._v = v
        return old

    def compare_and_swap(self, old: int, new: int) -> bool:
        """If the value is ``old``, set it to ``new`` and return True; else False."""
        old, new = _wrap(old), _wrap(new)
        with self._lock:
            if self._v != old:
                return False
            self._v = new
            return True

    def add(self, delta: int) -> int:
        """Add ``delta`` (wrapping around at 64 bits) and return the *new* value."""
        delta = index(delta)
        with self._lock:
            v = self._v = _wrap(self._v + delta)
        return v

    def __repr__(self) -> str:
        return f"<csp.atomic.Int64 {self._v}>"


@final
class Bool:
    """An atomic boolean (Go: ``atomic.Bool``).

    ``load()``, ``store(v)``, ``swap(v) -> old``, ``compare_and_swap(old, new) ->
    bool``; values are converted with ``bool()``. Safe from several OS threads at
    once. Example::

        closed = csp.atomic.Bool()
        if closed.compare_and_swap(False, True):
            ...  # only the first caller gets here
    """

    __slots__ = ("_lock", "_v")

    def __init__(self, v: bool = False) -> None:
        self._v = bool(v)
        self._lock = threading.Lock()

    def load(self) -> bool:
        """The current value."""
        return self._v

    def store(self, v: bool) -> None:
        """Set the value to ``v``."""
        v = bool(v)
        with self._lock:
            self._v = v

    def swap(self, v: bool) -> bool:
        """Set the value to ``v`` and return the previous value."""
        v = bool(v)
        with self._lock:
            old = self._v
            self._v = v
        return old

    def compare_and_swap(self, old: bool, new: bool) -> bool:
        """If the value is ``old``, set it to ``new`` and return True; else False."""
        old, new = bool(old), bool(new)
        with self._lock:
            if self._v is not old:
                return False
            self._v = new
            return True

    def __repr__(self) -> str:
        return f"<csp.atomic.Bool {self._v}>"


@final
class Value(Generic[T]):
    """An atomic holder of any value (Go: ``atomic.Value``).

    ``load()`` returns None until something is stored. As in Go, every value stored
    must have the same type as the first one, and None cannot be stored (None means
    "nothing stored"): misuse raises ``TypeError`` with Go's text, e.g. ``sync/atomic:
    store of inconsistently typed value into Value``. ``Value(v)`` with ``v`` not None
    is a Value with ``v`` already stored. Types are compared exactly (``type(a) is
    type(b)``), values with ``==``. Safe from several OS threads at once. Example::

        config = csp.atomic.Value(load_config())
        config.store(load_config())
        current = config.load()
    """

    __slots__ = ("_lock", "_v")

    def __init__(self, v: T | None = None) -> None:
        self._v = v
        self._lock = threading.Lock()

    def load(self) -> T | None:
        """The value last stored, or None if nothing was stored."""
        return self._v

    def _check(self, v: T, what: str) -> None:
        # Precondition: self._lock is held.
        if v is None:
            raise TypeError(f"sync/atomic: {what} of nil value into Value")
        cur = self._v
        if cur is not None and type(cur) is not type(v):
            raise TypeError(f"sync/atomic: {what} of inconsistently typed value into Value")

    def store(self, v: T) -> None:
        """Store ``v``; it must not be None and must have the type stored before."""
        with self._lock:
            self._check(v, "store")
            self._v = v

    def swap(self, v: T) -> T | None:
        """Store ``v`` and return the previous value (None if there was none)."""
        with self._lock:
            self._check(v, "swap")
            old = self._v
            self._v = v
        return old

    def compare_and_swap(self, old: T | None, new: T) -> bool:
        """If the stored value equals ``old``, store ``new`` and return True.

        ``old=None`` matches an empty Value. ``new`` must not be None, and ``old``
        (unless None) must have ``new``'s type.
        """
        if new is None:
            raise TypeError("sync/atomic: compare and swap of nil value into Value")
        if old is not None and type(old) is not type(new):
            raise TypeError("sync/atomic: compare and swap of inconsistently typed values")
        with self._lock:
            cur = self._v
            if cur is None:
                if old is not None:
                    return False
                self._v = new
                return True
            if type(cur) is not type(new):
                raise TypeError(
                    "sync/atomic: compare and swap of inconsistently typed value into Value"
                )
            if cur != old:
                return False
            self._v = new
            return True

    def __repr__(self) -> str:
        return f"<csp.atomic.Value {self._v!r}>"
