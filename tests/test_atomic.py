"""Tests for csp.atomic: Int64, Bool, Value, single-threaded and from 4 OS threads."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

import csp
from csp import atomic

THREADS = 4


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads every microsecond so read-modify-write steps really interleave."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def in_threads(fn: Callable[[int], None], n: int = THREADS) -> None:
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait()
            fn(i)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_module_is_public() -> None:
    assert csp.atomic is atomic
    assert "atomic" in csp.__all__
    assert atomic.__all__ == ["Bool", "Int64", "Value"]
    for cls in (atomic.Int64, atomic.Bool, atomic.Value):
        assert getattr(cls, "__final__", False) is True
        assert cls.__doc__ and "(Go: " in cls.__doc__
    objs: list[object] = [atomic.Int64(), atomic.Bool(), atomic.Value()]
    for obj in objs:
        assert not hasattr(obj, "__dict__")


def test_int64_operations() -> None:
    v = atomic.Int64()
    assert v.load() == 0
    v.store(5)
    assert v.add(3) == 8  # add returns the new value
    assert v.add(-10) == -2
    assert v.swap(7) == -2  # swap returns the old value
    assert v.load() == 7
    assert v.compare_and_swap(6, 1) is False
    assert v.load() == 7
    assert v.compare_and_swap(7, 1) is True
    assert v.load() == 1
    assert repr(v) == "<csp.atomic.Int64 1>"
    assert atomic.Int64(42).load() == 42
    with pytest.raises(TypeError):
        v.add(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        v.store("1")  # type: ignore[arg-type]
    assert v.load() == 1


def test_int64_wraps_like_go() -> None:
    top, bottom = 2**63 - 1, -(2**63)
    v = atomic.Int64(top)
    assert v.add(1) == bottom
    assert v.add(-1) == top
    assert atomic.Int64(2**64 + 5).load() == 5
    v.store(2**63)
    assert v.load() == bottom
    assert v.swap(-(2**63) - 1) == bottom
    assert v.load() == top
    assert v.compare_and_swap(-1 + 2**64, 0) is False
    v.store(-1)
    assert v.compare_and_swap(2**64 - 1, 3) is True  # same int64 bits as -1
    assert v.load() == 3


def test_bool_operations() -> None:
    b = atomic.Bool()
    assert b.load() is False
    b.store(True)
    assert b.load() is True
    assert b.swap(False) is True
    assert b.compare_and_swap(True, True) is False
    assert b.compare_and_swap(False, True) is True
    assert b.load() is True
    assert repr(b) == "<csp.atomic.Bool True>"
    assert atomic.Bool(True).load() is True


def test_value_operations_and_go_panics() -> None:
    v: atomic.Value[int] = atomic.Value()
    assert v.load() is None
    with pytest.raises(TypeError, match=r"^sync/atomic: store of nil value into Value$"):
        v.store(None)  # type: ignore[arg-type]
    v.store(1)
    assert v.load() == 1
    with pytest.raises(
        TypeError, match=r"^sync/atomic: store of inconsistently typed value into Value$"
    ):
        v.store("x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^sync/atomic: swap of nil value into Value$"):
        v.swap(None)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"^sync/atomic: swap of inconsistently typed value into Value$"
    ):
        v.swap(True)  # bool is not int, as in Go
    assert v.swap(2) == 1
    with pytest.raises(
        TypeError, match=r"^sync/atomic: compare and swap of nil value into Value$"
    ):
        v.compare_and_swap(2, None)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"^sync/atomic: compare and swap of inconsistently typed values$"
    ):
        v.compare_and_swap("2", 3)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError,
        match=r"^sync/atomic: compare and swap of inconsistently typed value into Value$",
    ):
        v.compare_and_swap(None, "s")  # type: ignore[arg-type]
    assert v.compare_and_swap(None, 9) is False  # not empty
    assert v.compare_and_swap(1, 9) is False
    assert v.compare_and_swap(2, 9) is True
    assert v.load() == 9
    assert repr(v) == "<csp.atomic.Value 9>"
    e: atomic.Value[str] = atomic.Value()
    assert e.compare_and_swap(None, "first") is True  # empty Value: old None matches
    assert e.load() == "first"
    assert atomic.Value((1, 2)).load() == (1, 2)


def test_int64_add_from_4_threads(fast_switching: None) -> None:
    v = atomic.Int64()
    n = 100_000

    def work(_: int) -> None:
        for _ in range(n):
            v.add(1)

    in_threads(work)
    assert v.load() == THREADS * n


def test_int64_cas_increment_loops_from_4_threads(fast_switching: None) -> None:
    v = atomic.Int64()
    n = 25_000
    failures = [0] * THREADS

    def work(i: int) -> None:
        done = 0
        while done < n:
            old = v.load()
            if v.compare_and_swap(old, old + 1):
                done += 1
            else:
                failures[i] += 1

    in_threads(work)
    assert v.load() == THREADS * n


def test_int64_wrapping_adds_from_4_threads(fast_switching: None) -> None:
    v = atomic.Int64()
    n = 20_000
    step = 2**62 + 12345

    def work(i: int) -> None:
        d = step if i % 2 == 0 else -step - i
        for _ in range(n):
            v.add(d)

    in_threads(work)
    total = sum((step if i % 2 == 0 else -step - i) * n for i in range(THREADS))
    expect = ((total + 2**63) % 2**64) - 2**63
    assert v.load() == expect


def test_swaps_from_4_threads_conserve_values(fast_switching: None) -> None:
    """Every value swapped in comes out exactly once (by a later swap or the final
    load): no swap is lost or duplicated."""
    n = 20_000
    iv = atomic.Int64(-1)
    val: atomic.Value[int] = atomic.Value(-1)
    outs: list[list[int]] = [[] for _ in range(THREADS)]
    vouts: list[list[int]] = [[] for _ in range(THREADS)]

    def work(i: int) -> None:
        for k in range(n):
            x = i * n + k
            outs[i].append(iv.swap(x))
            vouts[i].append(val.swap(x))  # type: ignore[arg-type]

    in_threads(work)
    expect = Counter(range(-1, THREADS * n))
    assert Counter([x for o in outs for x in o] + [iv.load()]) == expect
    assert Counter([x for o in vouts for x in o] + [val.load()]) == expect


def test_bool_cas_one_winner_per_round_from_4_threads(fast_switching: None) -> None:
    rounds = 500
    flag = atomic.Bool()
    wins = [0] * THREADS
    barrier = threading.Barrier(THREADS)

    def work(i: int) -> None:
        for _ in range(rounds):
            if flag.compare_and_swap(False, True):
                wins[i] += 1
            if barrier.wait() == 0:
                flag.store(False)
            barrier.wait()

    in_threads(work)
    assert sum(wins) == rounds


def test_value_cas_counter_from_4_threads(fast_switching: None) -> None:
    v: atomic.Value[int] = atomic.Value(0)
    n = 10_000

    def work(_: int) -> None:
        done = 0
        while done < n:
            old = v.load()
            assert old is not None
            if v.compare_and_swap(old, old + 1):
                done += 1

    in_threads(work)
    assert v.load() == THREADS * n
