"""Types of csp's compiled core (csp/_speedups.c); its pure twin is csp._waiter._WaiterCore."""

from collections.abc import Callable, Generator
from typing import Any

class WaiterCore:
    _asyncio_future_blocking: bool
    base: int | None
    index: int
    next: Any
    ok: bool
    on_abort: Any
    prev: Any
    q: Any
    reason: str
    state: int
    value: Any
    waker: Any
    def __init__(self, reason: str, value: Any = None) -> None: ...
    def __await__(self) -> Generator[Any]: ...
    def __iter__(self) -> WaiterCore: ...
    def __next__(self) -> WaiterCore: ...
    def send(self, value: object) -> WaiterCore: ...
    def throw(self, typ: object, val: object = None, tb: object = None) -> WaiterCore: ...
    def close(self) -> None: ...

def setup(budget: Any, thrown: Callable[[Any, BaseException], bool],
          cancelled_error: Callable[[Any], BaseException], pending: int,
          cancelled: int) -> None: ...
