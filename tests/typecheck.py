"""Type-checking snippets with ``mypy --strict``: the shared harness.

A snippet marks each line that must fail with ``# E: <start of mypy's message>``;
:func:`check_snippet` runs mypy on it and asserts that exactly those lines fail, with
those messages, and nothing else. One mypy cache per test session keeps it quick.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

_cache: list[Path] = []


def check_snippet(snippet: str, tmp_path: Path, name: str = "snippet") -> None:
    api = pytest.importorskip("mypy.api")
    if not _cache:
        _cache.append(tmp_path / "mypy-cache")
    src = tmp_path / f"{name}.py"
    src.write_text(snippet)
    out, err, _ = api.run(
        ["--strict", "--cache-dir", str(_cache[0]), "--no-error-summary",
         "--hide-error-context", "--show-column-numbers", str(src)]
    )
    lines = snippet.splitlines()
    expected = {i: line.split("# E: ", 1)[1] for i, line in enumerate(lines) if "# E: " in line}
    got: dict[int, str] = {}
    for row in out.splitlines():
        m = re.match(rf".*{name}\.py:(\d+):\d+: error: (.*)", row)
        if m is None:
            continue  # a note
        got[int(m.group(1)) - 1] = m.group(2)
    assert sorted(got) == sorted(expected), (out, err)
    for i, msg in expected.items():
        assert got[i].startswith(msg), (got[i], msg)
