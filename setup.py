"""The compiled core (csp/_speedups.c, issue 18): built by the normal install when a C
compiler is there; optional, so the install falls back to pure Python when the build
fails, and skipped when ``CSP_NO_EXTENSIONS`` is set (to anything but "" or "0") or on
an interpreter other than CPython. The rest of the metadata is in pyproject.toml."""

import os
import platform

from setuptools import Extension, setup

skip = os.environ.get("CSP_NO_EXTENSIONS", "") not in ("", "0")
cpython = platform.python_implementation() == "CPython"
extensions = [] if skip or not cpython else [
    Extension("csp._speedups", ["csp/_speedups.c"], optional=True),
]

setup(ext_modules=extensions)
