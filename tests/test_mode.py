"""csp._mode: which build of the core runs, and CSP_NO_EXTENSIONS forcing pure Python."""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Generic

import pytest

import csp
from csp import _mode

EXT = importlib.machinery.EXTENSION_SUFFIXES[0]


def test_compiled_is_a_bool_that_matches_the_loaded_modules() -> None:
    assert type(csp.compiled) is bool
    assert csp.compiled == _mode.compiled()
    assert "compiled" in csp.__all__


def test_compiled_is_true_exactly_when_the_core_in_use_comes_from_an_extension(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = _mode.HOT[0]
    fake = types.ModuleType(name)
    fake.__loader__ = importlib.machinery.ExtensionFileLoader(name, "x" + EXT)
    monkeypatch.setattr(_mode, "_checked", (fake,))
    assert _mode.compiled() is True
    monkeypatch.setattr(_mode, "_checked", (types.ModuleType(name),))
    assert _mode.compiled() is False
    monkeypatch.setattr(_mode, "_checked", (None,))  # pure: even if one is imported
    monkeypatch.setitem(sys.modules, name, fake)
    assert _mode.compiled() is False


@pytest.mark.parametrize(("module", "cls", "twin", "core"), [
    ("csp._waiter", "Waiter", "_WaiterCore", "WaiterCore"),
    ("csp._sched", "Scheduler", "_SchedulerCore", "SchedulerCore"),
    ("csp._drive", "Goroutine", "_GoroutineCore", "GoroutineCore"),
    ("csp._waitq", "WaitQ", "_WaitQCore", "WaitQCore"),
    ("csp._chan", "_BaseChan", "_ChanCore", "ChanCore"),
    ("csp._threads", "_Budget", "_BudgetCore", "BudgetCore"),
    ("csp._threads", "_Shared", "_SharedCore", "SharedCore"),
    ("csp._sync", "Mutex", "_MutexCore", "MutexCore"),
])
def test_each_core_is_the_compiled_one_exactly_when_compiled(
    module: str, cls: str, twin: str, core: str,
) -> None:
    import importlib

    mro = getattr(importlib.import_module(module), cls).__mro__
    assert mro[-1] is object and mro[2:-1] in ((), (Generic,))
    if csp.compiled:
        assert (mro[1].__module__, mro[1].__name__) == ("csp._speedups", core)
    else:
        assert (mro[1].__module__, mro[1].__name__) == (module, twin)


def test_speedups_is_none_when_the_variable_asks_for_pure_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CSP_NO_EXTENSIONS", "1")
    assert _mode._load() is None


@pytest.mark.skipif(not csp.compiled, reason="needs the built extension")
def test_a_stale_extension_is_refused_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.path.getmtime

    def newer_source(path: str) -> float:
        return real(path) + (1e6 if path.endswith(".c") else 0)

    assert _mode._load() is not None  # as built
    monkeypatch.setattr(os.path, "getmtime", newer_source)
    with pytest.warns(RuntimeWarning, match=r"older than .*_speedups\.c; using the pure"):
        assert _mode._load() is None
    # a refused build is not the core in use, though Python did import it
    monkeypatch.setattr(_mode, "_checked", (None,))
    assert _mode.compiled() is False


@pytest.mark.parametrize(("value", "expected"), [("", False), ("0", False), ("1", True),
                                                 ("yes", True)])
def test_the_variable_is_read_as_go_and_ci_write_it(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("CSP_NO_EXTENSIONS", value)
    assert _mode.no_extensions() is expected


def test_the_source_only_finder_picks_the_source_over_an_extension_beside_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "_waitq.py").write_text("X = 1\n")
    (tmp_path / ("_waitq" + EXT)).write_bytes(b"")
    default = importlib.machinery.FileFinder(  # the order Python's own path finder uses
        str(tmp_path),
        (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
        (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES),
    ).find_spec("csp._waitq")
    assert default is not None
    assert isinstance(default.loader, importlib.machinery.ExtensionFileLoader)  # it would win
    spec = _mode._SourceOnly().find_spec("csp._waitq", [str(tmp_path)])
    assert spec is not None and spec.origin == str(tmp_path / "_waitq.py")
    assert isinstance(spec.loader, importlib.machinery.SourceFileLoader)
    assert _mode._SourceOnly().find_spec("other._waitq", [str(tmp_path)]) is None
    assert _mode._SourceOnly().find_spec("csp._missing", [str(tmp_path)]) is None


def test_with_the_variable_set_every_csp_module_loads_from_source() -> None:
    code = (
        "import sys, importlib.machinery as m, csp\n"
        "bad = [n for n, mod in sys.modules.items() if n.startswith('csp.') and mod is not None"
        " and not isinstance(mod.__loader__, (m.SourceFileLoader, m.SourcelessFileLoader))]\n"
        "assert not bad, bad\n"
        "assert csp.compiled is False\n"
        "assert type(sys.meta_path[0]).__name__ == '_SourceOnly'\n"
        "print(len([n for n in sys.modules if n.startswith('csp.')]))\n"
    )
    env = {**os.environ, "CSP_NO_EXTENSIONS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= len(_mode.HOT)


def test_the_compiled_operations_carry_their_pure_twins_docstrings() -> None:
    """The C docstrings (csp/_speedups.c) are copies: they must say what the pure
    twins say, word for word."""
    import inspect

    from csp import _chan, _select, _sync

    pairs = [(csp.select, _select._pure_select)] + [
        (getattr(csp.Chan, n), getattr(_chan._PureChanCore, n))
        for n in ("recv", "recv_ok", "send")] + [
        (getattr(csp.Mutex, n), getattr(_sync._PureMutexCore, n))
        for n in ("lock", "try_lock", "unlock")]
    for compiled, pure in pairs:
        assert inspect.cleandoc(compiled.__doc__ or "") == inspect.cleandoc(pure.__doc__ or "")
