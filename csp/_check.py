"""Argument checks shared by the public constructors and the timer entry points.

Each check names the function and the argument in its message (Go would have refused
the program at compile time, or panicked at the call): bad input fails at the call,
never later inside a loop callback. They run at construction and at the timer and
duration entry points only, never in a channel's per-operation path.

* A count (a capacity, a weight, a delta, a limit) has ``operator.index`` semantics:
  an ``int`` or an object with ``__index__``; a ``bool`` is not a count.
* A duration or a deadline is a real number (``int``, ``float`` or any
  ``numbers.Real``, not a ``bool``), returned as a float; NaN is a ``ValueError``
  (it would corrupt the loop's timer heap). Infinity is accepted: ``+inf`` never
  comes, ``-inf`` has passed.
"""

from __future__ import annotations

import math
import numbers
import operator

__all__ = ["TIMERS_FIX", "count", "duration", "foreign_loop"]

TIMERS_FIX = "make timers inside the csp.run (or loop) that uses them"
"""What :func:`foreign_loop` tells the user of a timer on the wrong loop."""


def count(who: str, name: str, value: object) -> int:
    """``value`` as an int, or ``TypeError("who: name must be an integer, got ...")``."""
    if type(value) is int:
        return value
    if not isinstance(value, bool):
        try:
            return operator.index(value)  # type: ignore[arg-type]
        except TypeError:
            pass
    raise TypeError(f"{who}: {name} must be an integer, got {value!r}")


def duration(who: str, name: str, value: object) -> float:
    """``value`` as a float: ``TypeError`` unless it is a real number, ``ValueError``
    for NaN; both messages name ``who`` (the function) and ``name`` (the argument)."""
    t = type(value)
    if t is float:
        f: float = value  # type: ignore[assignment]
    elif t is int:
        try:
            return float(value)  # type: ignore[arg-type]
        except OverflowError:  # beyond any clock: as far as infinity
            return math.inf if value > 0 else -math.inf  # type: ignore[operator]
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        f = float(value)
    else:
        raise TypeError(f"{who}: {name} must be a real number, got {value!r}")
    if f != f:
        raise ValueError(f"{who}: {name} is NaN")
    return f


def foreign_loop(what: str, loop: object, running: object, fix: str) -> RuntimeError:
    """The error for ``what`` used away from the loop it belongs to: ``loop`` is
    closed (``running`` None) or is not the running loop; ``fix`` says what to do."""
    if running is None:
        where = "which is closed"
    else:
        where = f"not to the running loop {running!r}"
    return RuntimeError(f"{what} belongs to {loop!r}, {where}; {fix}")
