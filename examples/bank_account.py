"""A bank account guarded by a Mutex, with a Cond for withdrawals that wait for funds.

Go pattern: package `bank` from "The Go Programming Language" (Donovan & Kernighan),
section 9.2 "Mutual Exclusion: sync.Mutex" (bank3), extended with a `sync.Cond` so a
withdrawal waits until the balance covers it. Shows: Mutex, `async with` as
Lock/defer Unlock, Cond.wait in a loop, Cond.broadcast, WaitGroup.

    var (
        mu      sync.Mutex // guards balance
        funds   = sync.NewCond(&mu)
        balance int
    )

    func Deposit(amount int) {
        mu.Lock()
        defer mu.Unlock()
        balance = balance + amount
        funds.Broadcast()
    }

    func Balance() int {
        mu.Lock()
        defer mu.Unlock()
        return balance
    }

    func WithdrawWhenAvailable(amount int) {
        mu.Lock()
        defer mu.Unlock()
        for balance < amount {
            funds.Wait()
        }
        balance -= amount
    }

Why a mutex on one thread? Goroutines interleave at every `await`. A read-modify-write
that awaits in the middle (a log write, a database call) loses updates without the
lock, exactly like a data race in Go; the first part of the program shows it.
"""

from __future__ import annotations

import csp


class Account:
    def __init__(self) -> None:
        self.mu = csp.Mutex()  # guards balance
        self.funds = csp.Cond(self.mu)
        self.balance = 0

    async def deposit(self, amount: int) -> None:
        async with self.mu:  # mu.Lock(); defer mu.Unlock()
            b = self.balance
            await audit_log(amount)  # an await inside the critical section
            self.balance = b + amount
            self.funds.broadcast()

    async def get_balance(self) -> int:
        async with self.mu:
            return self.balance

    async def withdraw_when_available(self, amount: int) -> None:
        async with self.mu:
            while self.balance < amount:  # always re-check after Wait
                await self.funds.wait()
            self.balance -= amount


async def audit_log(amount: int) -> None:
    await csp.gosched()  # stands for any real I/O


async def racy_deposit(acct: Account, amount: int) -> None:
    b = acct.balance  # no lock: another goroutine may run during the await
    await audit_log(amount)
    acct.balance = b + amount


async def main() -> None:
    racy = Account()
    wg = csp.WaitGroup()
    for amount in range(1, 101):
        wg.go(racy_deposit, racy, amount)
    await wg.wait()
    lost = "some updates were lost" if racy.balance < 5050 else "no update lost (luck)"
    print(f"without the mutex: {lost}")  # the exact balance depends on the interleaving

    acct = Account()
    for amount in range(1, 101):
        wg.go(acct.deposit, amount)
    await wg.wait()
    print(f"with the mutex: balance {await acct.get_balance()}, expected 5050")

    # Withdrawals that wait for funds: three customers, then deposits trickle in.
    acct = Account()
    done = csp.Chan[str](3)

    async def customer(name: str, amount: int) -> None:
        await acct.withdraw_when_available(amount)
        await done.send(f"{name} withdrew {amount}")

    for name, amount in (("ann", 30), ("bob", 50), ("cid", 20)):
        csp.go(customer, name, amount)
    await csp.gosched()  # all three are now parked in Cond.wait
    for _ in range(10):
        await acct.deposit(10)
    served = sorted([await done.recv() or "" for _ in range(3)])
    print("; ".join(served), f"; balance left {await acct.get_balance()}", sep="")


if __name__ == "__main__":
    csp.run(main)
