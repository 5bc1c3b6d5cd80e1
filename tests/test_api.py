"""The public surface: export list, docstrings, slotted final classes, reprs.

The expected names are hardcoded here (the repository must not read ../shared at
test time): every name of the API contract, section by section.
"""

from __future__ import annotations
import __future__

import asyncio
import importlib
import importlib.resources
import inspect
import pickle
import traceback
from typing import Any

import pytest

import csp

# API.md: Runtime (goroutines), Channels, select.
CORE = {
    "run",
    "go",
    "gosched",
    "num_goroutine",
    "DeadlockError",
    "Chan",
    "nil",
    "ChannelError",
    "ClosedChannelError",
    "select",
}
# API.md, second wave: direction views (typing) and the non-blocking operations.
ADDITIONS = {"RecvChan", "SendChan", "WouldBlock"}


def public_names() -> set[str]:
    """Names the package exposes (public submodules such as ``csp.atomic`` included),
    except the ``annotations`` feature left by ``from __future__ import annotations``."""
    return {
        n
        for n, v in vars(csp).items()
        if not n.startswith("_") and not isinstance(v, __future__._Feature)
    }


def test_all_matches_exported_names() -> None:
    """``csp.__all__`` lists exactly the public names, once each, and star-import
    gives exactly them."""
    assert len(csp.__all__) == len(set(csp.__all__))
    assert set(csp.__all__) == public_names()
    ns: dict[str, Any] = {}
    exec("from csp import *", ns)
    assert {n for n in ns if n != "__builtins__"} == set(csp.__all__)


# API.md: sync, atomic, context, time.
SYNC = {"Mutex", "RWMutex", "WaitGroup", "Once", "Cond", "Semaphore", "ErrGroup"}
TIME = {"after", "tick", "Timer", "Ticker", "after_func", "sleep"}
MODULES = {"atomic", "context"}
ATOMIC = {"Int64", "Bool", "Value"}
CONTEXT = {
    "background", "todo", "with_cancel", "with_timeout", "with_deadline", "with_value",
    "Canceled", "DeadlineExceeded",
}


def test_core_names_exist() -> None:
    """Every name of API.md's Runtime, Channels and select sections is exported."""
    assert sorted(CORE - set(csp.__all__)) == []
    for name in CORE:
        assert getattr(csp, name) is not None


def test_contract_names_exist() -> None:
    """Every top-level name of the contract is exported, and nothing else."""
    assert set(csp.__all__) == CORE | SYNC | TIME | MODULES | ADDITIONS
    assert ATOMIC <= set(dir(csp.atomic))
    assert CONTEXT <= set(dir(csp.context))
    assert issubclass(csp.context.DeadlineExceeded, TimeoutError)


def test_every_public_name_has_a_docstring() -> None:
    """STYLE 8: every public name, and every public method or property of a public
    class, has a docstring."""
    missing = []
    for name in csp.__all__:
        obj = getattr(csp, name)
        if not (inspect.getdoc(obj) or "").strip():
            missing.append(name)
        if inspect.isclass(obj) and not issubclass(obj, BaseException):
            for attr, member in vars(obj).items():
                # public members, plus the dunders that carry Go semantics
                if attr.startswith("_") and attr not in ("__len__", "__anext__"):
                    continue
                if callable(member) or isinstance(member, property):
                    if not (inspect.getdoc(member) or "").strip():
                        missing.append(f"{name}.{attr}")
    assert missing == []


def test_public_classes_are_final_and_slotted() -> None:
    """STYLE 9: public classes are ``@final`` and define ``__slots__`` (instances have
    no ``__dict__``). Exceptions are exempt: BaseException carries a ``__dict__``
    anyway, and ChannelError must stay subclassable. The direction views RecvChan and
    SendChan are typing Protocols (a Chan is one structurally), not classes to build."""
    checked = []
    for name in csp.__all__:
        cls = getattr(csp, name)
        if not inspect.isclass(cls) or issubclass(cls, BaseException):
            continue
        if name in ("RecvChan", "SendChan"):
            assert getattr(cls, "_is_protocol", False), name
            continue
        checked.append(name)
        assert "__slots__" in vars(cls), name
        assert getattr(cls, "__final__", False) is True, name
    assert "Chan" in checked
    assert not hasattr(csp.Chan(), "__dict__")
    assert not hasattr(csp.nil, "__dict__")


def test_error_hierarchy() -> None:
    """API.md: ClosedChannelError subclasses ChannelError subclasses RuntimeError;
    STYLE 11: no csp error is (or subclasses) CancelledError."""
    assert issubclass(csp.ClosedChannelError, csp.ChannelError)
    assert issubclass(csp.ChannelError, RuntimeError)
    assert issubclass(csp.DeadlockError, Exception)
    for e in (csp.ChannelError, csp.ClosedChannelError, csp.DeadlockError):
        assert not issubclass(e, asyncio.CancelledError)


PACKAGE_ERRORS = {
    "csp": ["ChannelError", "ClosedChannelError", "DeadlockError"],
    "csp.context": ["Canceled", "DeadlineExceeded"],
}


def test_exceptions_show_their_public_names() -> None:
    """API.md (exceptions): each public exception's ``__module__`` is the module users
    import it from, its qualified name is its own, and pickling goes through that
    public name and comes back as the same class."""
    for modname, names in PACKAGE_ERRORS.items():
        mod = importlib.import_module(modname)
        for name in names:
            cls = getattr(mod, name)
            assert (cls.__module__, cls.__qualname__) == (modname, name)
            err = cls("boom") if modname == "csp" else cls()
            back = pickle.loads(pickle.dumps(err))
            assert type(back) is cls and str(back) == str(err)


def test_would_block_is_a_plain_package_exception() -> None:
    """API.md (non-blocking operations): ``csp.WouldBlock`` is an ``Exception``, not a
    ``ChannelError`` (nothing was misused) nor a ``RuntimeError``; its docstring
    names the calls that raise it. (csp/__init__.py exports it with those calls.)"""
    from csp._errors import WouldBlock

    assert WouldBlock.__module__ == "csp"
    assert issubclass(WouldBlock, Exception)
    assert not issubclass(WouldBlock, (csp.ChannelError, RuntimeError, asyncio.CancelledError))
    doc = inspect.getdoc(WouldBlock) or ""
    for call in ("send_nowait", "recv_nowait", "recv_ok_nowait"):
        assert call in doc


def exception_line(err: BaseException) -> str:
    """The line of ``err``'s printed traceback that names its type and starts its
    message (the first unindented line after the last frame)."""
    text = "".join(traceback.format_exception(err))
    assert "csp._" not in text.replace(csp.__file__.rsplit("/", 1)[0], "")  # no private name
    lines = text.splitlines()
    last_frame = max((i for i, line in enumerate(lines) if line.startswith('  File "')), default=-1)
    return next(line for line in lines[last_frame + 1 :] if not line.startswith(" "))


def test_tracebacks_print_public_names(run: Any) -> None:
    """An uncaught csp exception's traceback ends in ``csp.DeadlockError: ...``,
    ``csp.ClosedChannelError: ...``, ``csp.context.Canceled: ...`` (the names to catch),
    not the private modules that define them."""

    async def deadlock() -> None:
        await csp.Chan[int]().recv()  # nobody will ever send

    with pytest.raises(csp.DeadlockError) as info:
        run(deadlock)
    line = exception_line(info.value)
    assert line == "csp.DeadlockError: all goroutines are asleep - deadlock!"

    async def close_twice() -> None:
        ch = csp.Chan[int]()
        ch.close()
        ch.close()

    with pytest.raises(csp.ClosedChannelError) as info2:
        run(close_twice)
    assert exception_line(info2.value) == "csp.ClosedChannelError: close of closed channel"
    with pytest.raises(csp.ChannelError) as info3:
        csp.nil.close()
    assert exception_line(info3.value) == "csp.ChannelError: close of nil channel"

    async def cancelled_scope() -> None:
        ctx, cancel = csp.context.with_cancel(csp.context.background())
        cancel()
        async with csp.context.scope(ctx):
            await asyncio.sleep(1)

    with pytest.raises(csp.context.Canceled) as info4:
        run(cancelled_scope)
    assert exception_line(info4.value) == "csp.context.Canceled: context canceled"
    err = csp.context.DeadlineExceeded()
    assert exception_line(err) == "csp.context.DeadlineExceeded: context deadline exceeded"


def test_chan_is_generic() -> None:
    """API.md: generic ``csp.Chan[T]``; the alias makes ordinary channels."""
    ch = csp.Chan[int](2)
    assert type(ch) is csp.Chan
    assert ch.cap == 2
    assert csp.Chan[str]().cap == 0


def test_package_is_typed() -> None:
    """STYLE 10: the package ships ``py.typed``."""
    assert importlib.resources.files("csp").joinpath("py.typed").is_file()
    assert isinstance(csp.__version__, str)


@pytest.mark.asyncio
async def test_chan_repr_shows_state() -> None:
    """STYLE 9: a channel's repr shows cap, len, live waiter counts and closed."""
    ch = csp.Chan[int](2)
    assert repr(ch) == "<csp.Chan cap=2 len=0 recv_waiters=0 send_waiters=0>"
    receivers = [asyncio.create_task(ch.recv()) for _ in range(2)]
    await asyncio.sleep(0)
    assert repr(ch) == "<csp.Chan cap=2 len=0 recv_waiters=2 send_waiters=0>"
    receivers[0].cancel()
    await asyncio.sleep(0)
    assert repr(ch) == "<csp.Chan cap=2 len=0 recv_waiters=1 send_waiters=0>"
    await ch.send(0)  # to the parked receiver
    await ch.send(1)  # buffered
    await ch.send(2)
    assert await receivers[1] == 0
    assert repr(ch) == "<csp.Chan cap=2 len=2 recv_waiters=0 send_waiters=0>"
    sender = asyncio.create_task(ch.send(3))
    await asyncio.sleep(0)
    assert repr(ch) == "<csp.Chan cap=2 len=2 recv_waiters=0 send_waiters=1>"
    ch.close()
    with pytest.raises(csp.ClosedChannelError):
        await sender
    assert repr(ch) == "<csp.Chan cap=2 len=2 recv_waiters=0 send_waiters=0 closed>"
    assert repr(csp.nil) == "<csp.nil>"
