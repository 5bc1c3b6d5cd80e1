"""csp/_once.py: ``once_func``, ``once_value``, ``once_values`` (Go 1.21 sync.OnceFunc,
OnceValue, OnceValues).

Invariants: ``f`` runs once to completion however many callers, threads or
goroutines call; every call returns the same value(s); if ``f`` raised, every call
raises that same exception object (with the first call's traceback, not a growing
one); an async ``f`` gives an async callable whose cancelled first call is not
remembered (the next caller runs ``f``, as ``Once``).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import csp


def test_once_value_calls_f_once_and_returns_its_value() -> None:
    calls: list[int] = []

    def f() -> list[int]:
        calls.append(1)
        return [42]

    get = csp.once_value(f)
    first = get()
    assert [get() for _ in range(5)] == [[42]] * 5
    assert all(get() is first for _ in range(3))
    assert calls == [1]


def test_once_func_returns_none_and_once_values_a_pair() -> None:
    ran: list[str] = []
    init = csp.once_func(lambda: ran.append("init"))
    assert (init(), init()) == (None, None)

    def read() -> tuple[str, None]:
        ran.append("pair")
        return "data", None

    pair = csp.once_values(read)
    assert pair() == ("data", None) and pair() == ("data", None)
    assert ran == ["init", "pair"]


@pytest.mark.parametrize("make", [csp.once_func, csp.once_value, csp.once_values])
def test_a_raising_f_raises_the_same_exception_on_every_call(make: Any) -> None:
    """Go: if f panics, the returned function panics with the same value on every
    call; here the same exception object, its traceback not growing call by call."""
    calls: list[int] = []
    boom = ValueError("boom")

    def f() -> Any:
        calls.append(1)
        raise boom

    g = make(f)
    depths = []
    for _ in range(4):
        with pytest.raises(ValueError) as ei:
            g()
        assert ei.value is boom
        tb, n = ei.value.__traceback__, 0
        while tb is not None:
            n, tb = n + 1, tb.tb_next
        depths.append(n)
    assert calls == [1]
    assert len(set(depths)) == 1, depths


def test_threads_calling_at_once_run_f_once_and_all_see_its_value() -> None:
    """8 threads call at once while f is slow: f runs once; every thread gets its
    value (the others waited for the first call, as Go's)."""
    calls: list[int] = []
    entered = threading.Event()
    release = threading.Event()

    def f() -> str:
        calls.append(1)
        entered.set()
        release.wait(5)
        return "value"

    get = csp.once_value(f)
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(get())) for _ in range(8)]
    for t in threads:
        t.start()
    entered.wait(5)
    release.set()
    for t in threads:
        t.join(5)
    assert calls == [1] and got == ["value"] * 8


@pytest.mark.asyncio
async def test_async_f_gives_an_async_callable_run_once_by_concurrent_goroutines() -> None:
    calls: list[int] = []
    gate = csp.Chan[None]()

    async def f() -> int:
        calls.append(1)
        await gate.recv()
        return 7

    get = csp.once_value(f)
    tasks = [csp.go(get) for _ in range(5)]
    await csp.gosched()
    await gate.send(None)
    assert [await t for t in tasks] == [7] * 5
    assert await get() == 7 and calls == [1]
    init = csp.once_func(f)
    gate.close()
    assert await init() is None


@pytest.mark.asyncio
async def test_cancelled_first_async_call_is_not_remembered() -> None:
    """As Once: the first caller is cancelled while f runs; the waiting caller runs f
    again and its value is remembered (a cancellation is not an outcome)."""
    runs: list[int] = []
    gate = csp.Chan[int]()

    async def f() -> int:
        runs.append(len(runs))
        return await gate.recv() or 0

    get = csp.once_value(f)
    first = csp.go(get)
    await csp.gosched()
    second = csp.go(get)
    await csp.gosched()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await gate.send(5)
    assert await second == 5
    assert await get() == 5 and runs == [0, 1]


@pytest.mark.asyncio
async def test_async_f_raising_raises_the_same_exception_every_call() -> None:
    boom = OSError("no")

    async def f() -> None:
        raise boom

    g = csp.once_func(f)
    for _ in range(3):
        with pytest.raises(OSError) as ei:
            await g()
        assert ei.value is boom


@pytest.mark.parametrize("make", [csp.once_func, csp.once_value, csp.once_values])
def test_a_non_callable_is_refused_at_the_call(make: Any) -> None:
    with pytest.raises(TypeError) as ei:
        make(42)
    assert str(ei.value) == f"{make.__name__}: f must be callable, got 42"
