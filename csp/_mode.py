"""Which build of csp's core is running: compiled extension modules, or pure Python.

Issue 18 compiles the hot path (waiter, wait queue, run queue and drain, channel
operations, select's poll) from the same ``.py`` sources; a compiled module sits next to
its source under the same name, and Python's import prefers the extension. This module
decides, once, before any other csp module is imported:

- ``CSP_NO_EXTENSIONS`` set to anything but ``""`` or ``"0"`` forces pure Python: a
  finder placed first on ``sys.meta_path`` loads every ``csp.*`` module from its ``.py``
  source (or its cached bytecode), never from an extension beside it. This is how the
  suite runs in both modes from one install, and how a user rules out the compiled core
  when they suspect it.
- ``compiled()`` says whether the core in use (:func:`speedups`) was in fact loaded
  from an extension; ``csp.compiled`` is its answer at import time.

Invariants (tests/test_mode.py): with the variable set, every loaded ``csp.*`` module has
a source loader and ``csp.compiled`` is False; ``csp.compiled`` is always a bool and
equals ``compiled()``.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

#: The compiled modules; the rest of csp is always pure Python (each has a pure twin).
HOT = ("csp._speedups",)


def no_extensions() -> bool:
    """True when ``CSP_NO_EXTENSIONS`` asks for the pure-Python core."""
    return os.environ.get("CSP_NO_EXTENSIONS", "") not in ("", "0")


class _SourceOnly:
    """A meta-path finder that loads ``csp.*`` from source even where an extension exists."""

    _loaders = (
        (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES),
        (importlib.machinery.SourcelessFileLoader, importlib.machinery.BYTECODE_SUFFIXES),
    )

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if not fullname.startswith("csp.") or not path:
            return None
        for entry in path:
            spec = importlib.machinery.FileFinder(entry, *self._loaders).find_spec(fullname)
            if spec is not None:
                return spec
        return None

    def __repr__(self) -> str:
        return "<csp source-only finder (CSP_NO_EXTENSIONS)>"


def install() -> None:
    """Put the source-only finder first on ``sys.meta_path`` if the variable asks for it."""
    if no_extensions() and not any(isinstance(f, _SourceOnly) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceOnly())


def speedups() -> ModuleType | None:
    """``csp._speedups`` (the compiled core), or None for the pure-Python core: when
    ``CSP_NO_EXTENSIONS`` asks for it, when the extension was not built (no compiler:
    the install falls back), or when it is stale, older than its ``.c`` beside it (an
    editable install whose source changed since: rebuild with ``pip install -e .``)."""
    global _checked
    if _checked is not None:
        return _checked[0]
    _checked = (_load(),)
    return _checked[0]


_checked: tuple[ModuleType | None] | None = None


def _load() -> ModuleType | None:
    if no_extensions():
        return None
    try:
        from csp import _speedups
    except ImportError:
        return None
    so = getattr(_speedups, "__file__", None) or ""
    src = os.path.join(os.path.dirname(so), "_speedups.c")
    try:
        stale = os.path.getmtime(src) > os.path.getmtime(so)
    except OSError:  # no source beside it (a wheel): as built
        stale = False
    if stale:
        import warnings

        warnings.warn(f"csp: {so} is older than {src}; using the pure-Python core "
                      "(rebuild: pip install -e .)", RuntimeWarning, stacklevel=2)
        return None
    return _speedups


def compiled() -> bool:
    """True when the compiled core is the one in use: :func:`speedups` loaded it from
    an extension (a stale or refused build, or one merely imported, does not count)."""
    ext = importlib.machinery.ExtensionFileLoader
    return isinstance(getattr(speedups(), "__loader__", None), ext)


install()  # at import: csp/__init__.py imports this module before any other
