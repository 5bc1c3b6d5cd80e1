"""What the numbers were measured on: CPU, cores, Python, library versions."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import csp


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def csp_commit() -> str | None:
    """The git commit of the csp being measured, if it is a checkout ("+dirty" if edited)."""
    root = Path(csp.__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty=+dirty", "--abbrev=12"],
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info() -> dict[str, Any]:
    uv = _version("uvloop")
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "csp": getattr(csp, "__version__", None),
        "csp_path": str(Path(csp.__file__).resolve().parent),
        "csp_commit": csp_commit(),
        "csp_mode": "compiled" if csp.compiled else "pure",
        "uvloop": uv,
        "anyio": _version("anyio"),
        "rich": _version("rich"),
    }


def describe(info: dict[str, Any]) -> str:
    """One line for table captions."""
    commit = f" @ {info['csp_commit']}" if info.get("csp_commit") else ""
    return (
        f"{info['cpu']}, {info['cores']} cores · {info['python_implementation']} "
        f"{info['python']} · csp {info['csp']}{commit} ({info.get('csp_mode', 'pure')}) · "
        f"uvloop {info['uvloop']} · "
        f"anyio {info['anyio']} · {info['platform']}"
    )
