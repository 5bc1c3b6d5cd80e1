"""Stale waiter entries (select losers, cancelled operations) must not pile up."""

from __future__ import annotations

import asyncio

import pytest

import csp


@pytest.mark.asyncio
async def test_select_losers_do_not_accumulate() -> None:
    """10,000 selects that always win on b leave a's receive queue bounded."""
    a, b = csp.Chan[int](), csp.Chan[int]()

    async def feeder() -> None:
        for i in range(10_000):
            await b.send(i)

    t = csp.go(feeder)
    total = 0
    for _ in range(10_000):
        i, v = await csp.select(a.recv, b.recv)
        assert i == 1
        total += v
    await t
    assert total == sum(range(10_000))
    assert len(a._recvq) <= 2 * 64
    assert "recv_waiters=0" in repr(a)


@pytest.mark.asyncio
async def test_cancelled_receivers_do_not_accumulate() -> None:
    """Receivers cancelled while parked leave at most a bounded number of entries."""
    ch = csp.Chan[int]()
    for _ in range(2_000):
        t = asyncio.create_task(ch.recv())
        await asyncio.sleep(0)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
    assert len(ch._recvq) <= 2 * 64
    r = asyncio.create_task(ch.recv())
    await asyncio.sleep(0)
    await ch.send(42)
    assert await r == 42
