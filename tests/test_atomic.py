"""Tests for csp.atomic: Int32, Int64, Uint32, Uint64, Bool, Value, single-threaded and
from 4 OS threads."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typecheck import check_snippet

import csp
from csp import atomic

THREADS = 4

IntType = type[atomic.Int32] | type[atomic.Int64] | type[atomic.Uint32] | type[atomic.Uint64]
INTS: tuple[IntType, ...] = (atomic.Int32, atomic.Int64, atomic.Uint32, atomic.Uint64)
# (type, lowest value, highest value): Go's math.MinInt32 ... math.MaxUint64
RANGES = [
    (atomic.Int32, -(2**31), 2**31 - 1),
    (atomic.Int64, -(2**63), 2**63 - 1),
    (atomic.Uint32, 0, 2**32 - 1),
    (atomic.Uint64, 0, 2**64 - 1),
]
RANGE_IDS = [cls.__name__ for cls, _, _ in RANGES]


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
    assert atomic.__all__ == ["Bool", "Int32", "Int64", "Uint32", "Uint64", "Value"]
    for cls in (*INTS, atomic.Bool, atomic.Value):
        assert getattr(cls, "__final__", False) is True
        assert cls.__doc__ and f"(Go: ``atomic.{cls.__name__}``)" in cls.__doc__
    objs: list[object] = [*(c() for c in INTS), atomic.Bool(), atomic.Value()]
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


# -- Int32, Uint32, Uint64 (and Int64 beside them) -----------------------------------


@pytest.mark.parametrize("cls", INTS, ids=lambda c: c.__name__)
def test_int_types_operations(cls: IntType) -> None:
    """Every integer type has Int64's methods with Int64's results inside its range."""
    v = cls()
    assert v.load() == 0
    v.store(5)
    assert v.add(3) == 8  # add returns the new value
    assert v.add(-2) == 6
    assert v.swap(7) == 6  # swap returns the old value
    assert v.load() == 7
    assert v.compare_and_swap(6, 1) is False
    assert v.load() == 7
    assert v.compare_and_swap(7, 1) is True
    assert v.load() == 1
    assert cls(42).load() == 42
    assert repr(cls(42)) == f"<csp.atomic.{cls.__name__} 42>"


@pytest.mark.parametrize(("cls", "lo", "hi"), RANGES, ids=RANGE_IDS)
def test_int_types_wrap_at_their_boundaries_like_go(cls: IntType, lo: int, hi: int) -> None:
    """Go's wrap-around at each end of the type's range, for add, store, swap, CAS and
    the constructor: the value is the low ``width`` bits, signed or not."""
    span = hi - lo + 1  # 2**width
    v = cls(hi)
    assert v.load() == hi
    assert v.add(1) == lo  # MaxInt32 + 1 == MinInt32; MaxUint32 + 1 == 0
    assert v.load() == lo
    assert v.add(-1) == hi  # MinInt32 - 1 == MaxInt32; 0 - 1 == MaxUint32
    assert v.add(2) == lo + 1
    assert v.add(span) == lo + 1  # a whole turn changes nothing
    assert v.add(-span - 2) == hi
    assert cls(hi + 1).load() == lo
    assert cls(lo - 1).load() == hi
    assert cls(span + 5).load() == 5
    v.store(hi + 1)
    assert v.load() == lo
    assert v.swap(lo - 1) == lo
    assert v.load() == hi
    # compare_and_swap compares the bits at the type's width
    assert v.compare_and_swap(hi - span, 0) is True  # hi - span has hi's bits
    assert v.load() == 0
    assert v.compare_and_swap(span, 3) is True  # span's low bits are 0
    assert v.compare_and_swap(4, 9) is False
    assert v.load() == 3


def test_uint_add_of_minus_one_decrements_like_go() -> None:
    """Go: ``AddUint32(&x, ^uint32(0))`` decrements x; ``add(-1)`` and
    ``add(2**32 - 1)`` are the same delta at 32 bits."""
    u32 = atomic.Uint32(3)
    assert u32.add(-1) == 2
    assert u32.add(2**32 - 1) == 1  # ^uint32(0)
    assert u32.add(-2) == 2**32 - 1
    assert u32.add(2**32 - 2) == 2**32 - 3  # Go: AddUint32(&x, ^uint32(c-1)) subtracts c
    assert u32.add(-(2**32 - 1)) == 2**32 - 2  # the same bits as +1
    u64 = atomic.Uint64(1)
    assert u64.add(2**64 - 1) == 0  # ^uint64(0)
    assert u64.add(-1) == 2**64 - 1
    assert atomic.Int32(-(2**31)).add(-1) == 2**31 - 1
    assert atomic.Int32(0).add(2**32 - 1) == -1  # the same bits as -1


def test_widths_are_independent() -> None:
    """The same inputs give each type its own Go value (int32(x), uint32(x), ...)."""
    x = 2**32 + 2**31 + 7  # low 32 bits: 2**31 + 7
    assert atomic.Int32(x).load() == -(2**31) + 7
    assert atomic.Uint32(x).load() == 2**31 + 7
    assert atomic.Int64(x).load() == x
    assert atomic.Uint64(-x).load() == 2**64 - x
    assert atomic.Int64(-x).load() == -x


@pytest.mark.parametrize("cls", INTS, ids=lambda c: c.__name__)
def test_int_types_reject_non_integers(cls: IntType) -> None:
    """Go's types admit integers only: anything without ``__index__`` is a
    ``TypeError``, and the value is unchanged afterwards."""
    v = cls(1)
    calls: list[Callable[[], object]] = [
        lambda: v.add(1.5),  # type: ignore[arg-type]
        lambda: v.add("1"),  # type: ignore[arg-type]
        lambda: v.store("1"),  # type: ignore[arg-type]
        lambda: v.store(1.0),  # type: ignore[arg-type]
        lambda: v.swap(None),  # type: ignore[arg-type]
        lambda: v.compare_and_swap(1, 2.0),  # type: ignore[arg-type]
        lambda: v.compare_and_swap("1", 2),  # type: ignore[arg-type]
        lambda: cls(0.5),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(TypeError):
            call()
    assert v.load() == 1


@pytest.mark.parametrize("cls", INTS, ids=lambda c: c.__name__)
def test_int_types_add_from_4_threads(cls: IntType, fast_switching: None) -> None:
    v = cls()
    n = 50_000

    def work(_: int) -> None:
        for _ in range(n):
            v.add(1)

    in_threads(work)
    assert v.load() == THREADS * n


@pytest.mark.parametrize(("cls", "lo", "hi"), RANGES, ids=RANGE_IDS)
def test_int_types_wrapping_adds_from_4_threads(
    cls: IntType, lo: int, hi: int, fast_switching: None
) -> None:
    """Starting one step below the top, threads adding +1 and -1 and large deltas
    cross both ends of the range many times; the final value is exact."""
    span = hi - lo + 1
    n = 20_000
    deltas = [1, -1, span // 2 + 3, -(span // 4) - 1]  # one per thread
    v = cls(hi)

    def work(i: int) -> None:
        d = deltas[i]
        for _ in range(n):
            v.add(d)

    in_threads(work)
    total = hi + sum(deltas) * n
    assert v.load() == (total - lo) % span + lo


def test_uint32_decrements_from_4_threads_wrap_below_zero(fast_switching: None) -> None:
    """Go's ``AddUint32(&x, ^uint32(0))`` from several goroutines: 4 x n decrements
    from 0 end at 2**32 - 4n, with no decrement lost."""
    v = atomic.Uint32()
    n = 50_000

    def work(i: int) -> None:
        for _ in range(n):
            v.add(2**32 - 1 if i % 2 else -1)

    in_threads(work)
    assert v.load() == 2**32 - THREADS * n


def test_int_types_cas_increment_loops_from_4_threads(fast_switching: None) -> None:
    """A CAS loop across the Int32 sign boundary: every increment is counted once."""
    n = 10_000
    start = 2**31 - 2 * n
    v = atomic.Int32(start)

    def work(_: int) -> None:
        done = 0
        while done < n:
            old = v.load()
            if v.compare_and_swap(old, old + 1):  # old + 1 may be 2**31: wraps
                done += 1

    in_threads(work)
    assert v.load() == start + THREADS * n - 2**32


MYPY_SNIPPET = """
from csp import atomic

a: atomic.Int32 = atomic.Int32(1)
b: atomic.Uint32 = atomic.Uint32()
c: atomic.Uint64 = atomic.Uint64(2**64 - 1)
x: int = a.add(1) + b.load() + c.swap(3) + atomic.Int64().add(-1)
ok: bool = b.compare_and_swap(0, 1)
c.store(0)
s: str = a.load()  # E: Incompatible types in assignment
a.add(1.5)  # E: Argument 1 to "add" of "_AtomicInt" has incompatible type "float"
b.store("x")  # E: Argument 1 to "store" of "_AtomicInt" has incompatible type "str"
class Sub(atomic.Uint64): ...  # E: Cannot inherit from final class "Uint64"
"""


def test_int_types_typing_is_mypy_strict_clean(tmp_path: Path) -> None:
    """STYLE 10: the new types type-check under ``mypy --strict``; the lines marked
    ``# E:`` are exactly the errors reported (wrong argument types, subclassing)."""
    check_snippet(MYPY_SNIPPET, tmp_path, "atomic_typing")


@pytest.mark.parametrize("cls", INTS, ids=lambda c: c.__name__)
def test_int_types_refuse_bools_and_name_the_argument(cls: IntType) -> None:
    """A bool is not an integer here (Go: a compile error), and every refusal names
    the method and the argument; the value is unchanged afterwards."""
    v = cls(1)
    name = f"atomic.{cls.__name__}"
    calls: list[tuple[str, Callable[[], object]]] = [
        (f"{name}: v", lambda: cls(True)),  # type: ignore[arg-type]
        (f"{name}.store: v", lambda: v.store(False)),  # type: ignore[arg-type]
        (f"{name}.swap: v", lambda: v.swap(True)),  # type: ignore[arg-type]
        (f"{name}.compare_and_swap: old", lambda: v.compare_and_swap(True, 2)),
        (f"{name}.compare_and_swap: new", lambda: v.compare_and_swap(1, True)),
        (f"{name}.add: delta", lambda: v.add(True)),  # type: ignore[arg-type]
    ]
    msgs = []
    for _, call in calls:
        with pytest.raises(TypeError) as e:
            call()
        msgs.append(str(e.value))
    assert msgs == [f"{who} must be an integer, got {b}" for (who, _), b in
                    zip(calls, ["True", "False", "True", "True", "True", "True"], strict=True)]
    assert v.load() == 1
