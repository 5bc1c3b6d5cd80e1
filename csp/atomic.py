"""Atomic values (Go: package ``sync/atomic``): ``Int32``, ``Int64``, ``Uint32``,
``Uint64``, ``Bool`` and ``Value``.

Strategy. Each object keeps its value in one attribute and one ``threading.Lock``.
A load is a single attribute read, which is atomic in Python; every operation that
writes (store, swap, compare-and-swap, add) takes the lock, so read-modify-write
steps are indivisible and all operations are linearizable (Go's atomics are
sequentially consistent). The objects are safe to share between OS threads and
event loops; they never block on anything but that short lock, so they are plain
calls, not coroutines.

The four integer types share one implementation, :class:`_AtomicInt`, parametrised
by width and signedness. Every value given to them (to the constructor, ``store``,
``swap``, ``compare_and_swap``, and the result of ``add``) is reduced to their width
the way Go converts between integer types: signed types wrap in two's complement
(``Int32(2**31 - 1).add(1)`` returns ``-2**31``), unsigned ones modulo ``2**width``
(``Uint32(0).add(-1)`` returns ``2**32 - 1``, as Go's ``AddUint32(&x, ^uint32(0))``
decrements). Example::

    requests = csp.atomic.Int64()
    requests.add(1)                      # from any thread or goroutine
    print(requests.load())               # 1
"""

from __future__ import annotations

import threading
from typing import ClassVar, Generic, TypeVar, final

from csp._check import count

__all__ = ["Bool", "Int32", "Int64", "Uint32", "Uint64", "Value"]

T = TypeVar("T")


def _limits(bits: int, signed: bool) -> tuple[int, int]:
    """``(_MASK, _SIGN)`` of a ``bits``-wide integer type."""
    return (1 << bits) - 1, (1 << (bits - 1)) if signed else 0


class _AtomicInt:
    """The atomic integer of one width and signedness; each subclass sets the two
    constants below (:func:`_limits`).

    Invariant: ``_v`` is always in the range of the type (``_wrap(_v) == _v``) and is
    written only with ``_lock`` held.
    """

    __slots__ = ("_lock", "_v")

    _MASK: ClassVar[int]  # 2**width - 1
    _SIGN: ClassVar[int]  # the sign bit, 2**(width - 1); 0 for unsigned types

    def _wrap(self, v: int, who: str = "store", name: str = "v") -> int:
        """``v`` reduced to the type, as Go's integer conversion does: the low
        ``width`` bits, read as two's complement if signed. Non-integers (anything
        without ``__index__``, and bools) raise ``TypeError`` naming the method
        ``who`` and the argument ``name``."""
        if type(v) is not int:
            v = self._int(v, who, name)
        v &= self._MASK
        sign = self._SIGN
        return v - (sign << 1) if v & sign else v

    def _int(self, v: object, who: str, name: str) -> int:
        return count(f"atomic.{type(self).__name__}{who and '.' + who}", name, v)

    def __init__(self, v: int = 0) -> None:
        self._v = self._wrap(v, "")
        self._lock = threading.Lock()

    def load(self) -> int:
        """The current value."""
        return self._v

    def store(self, v: int) -> None:
        """Set the value to ``v`` (wrapped to the type's width)."""
        v = self._wrap(v)
        with self._lock:
            self._v = v

    def swap(self, v: int) -> int:
        """Set the value to ``v`` (wrapped) and return the previous value."""
        v = self._wrap(v, "swap")
        with self._lock:
            old = self._v
            self._v = v
        return old

    def compare_and_swap(self, old: int, new: int) -> bool:
        """If the value is ``old``, set it to ``new`` and return True; else False.

        Both are wrapped first, so ``old`` matches by its bits at the type's width.
        """
        wrap = self._wrap
        old, new = wrap(old, "compare_and_swap", "old"), wrap(new, "compare_and_swap", "new")
        with self._lock:
            if self._v != old:
                return False
            self._v = new
            return True

    def add(self, delta: int) -> int:
        """Add ``delta`` (wrapping around at the type's width) and return the *new* value."""
        if type(delta) is not int:
            delta = self._int(delta, "add", "delta")
        wrap = self._wrap
        with self._lock:
            v = self._v = wrap(self._v + delta)
        return v

    def __repr__(self) -> str:
        return f"<csp.atomic.{type(self).__name__} {self._v}>"


@final
class Int32(_AtomicInt):
    """An atomic signed 32-bit integer (Go: ``atomic.Int32``).

    ``load()``, ``store(v)``, ``swap(v) -> old``, ``compare_and_swap(old, new) ->
    bool`` and ``add(delta) -> new``. Arithmetic wraps around at 32 bits in two's
    complement, as in Go: ``Int32(2**31 - 1).add(1)`` returns ``-2**31``. Safe from
    several OS threads at once. Example::

        level = csp.atomic.Int32()
        level.add(-1)
        assert level.load() == -1
    """

    __slots__ = ()
    _MASK, _SIGN = _limits(32, signed=True)


@final
class Int64(_AtomicInt):
    """An atomic signed 64-bit integer (Go: ``atomic.Int64``).

    ``load()``, ``store(v)``, ``swap(v) -> old``, ``compare_and_swap(old, new) ->
    bool`` and ``add(delta) -> new``. Arithmetic wraps around at 64 bits, as in Go.
    Safe from several OS threads at once. Example::

        hits = csp.atomic.Int64()
        hits.add(1)
        assert hits.load() == 1
    """

    __slots__ = ()
    _MASK, _SIGN = _limits(64, signed=True)


@final
class Uint32(_AtomicInt):
    """An atomic unsigned 32-bit integer (Go: ``atomic.Uint32``).

    ``load()``, ``store(v)``, ``swap(v) -> old``, ``compare_and_swap(old, new) ->
    bool`` and ``add(delta) -> new``. Values are taken modulo ``2**32``, as Go's
    conversion to ``uint32``: ``add(-1)`` decrements (Go: ``AddUint32(&x,
    ^uint32(0))``) and ``Uint32(0).add(-1)`` returns ``2**32 - 1``. Safe from several
    OS threads at once. Example::

        free = csp.atomic.Uint32(8)
        free.add(-1)
        assert free.load() == 7
    """

    __slots__ = ()
    _MASK, _SIGN = _limits(32, signed=False)


@final
class Uint64(_AtomicInt):
    """An atomic unsigned 64-bit integer (Go: ``atomic.Uint64``).

    ``load()``, ``store(v)``, ``swap(v) -> old``, ``compare_and_swap(old, new) ->
    bool`` and ``add(delta) -> new``. Values are taken modulo ``2**64``, as Go's
    conversion to ``uint64``: ``Uint64(2**64 - 1).add(1)`` returns 0 and ``add(-1)``
    decrements (Go: ``AddUint64(&x, ^uint64(0))``). Safe from several OS threads at
    once. Example::

        sent = csp.atomic.Uint64()
        sent.add(1500)
        assert sent.load() == 1500
    """

    __slots__ = ()
    _MASK, _SIGN = _limits(64, signed=False)


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
