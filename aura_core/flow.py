"""Flow budgets: charge-before-send accounting per (context, peer) (SPEC §4, seed 002 §3).

Owns :class:`FlowBudget` (the replicated CRDT value), :class:`FlowAccount` (one live, mutable,
thread-safe budget with reservations) and :class:`FlowLedger` (accounts keyed by
``(ContextId, peer AuthorityId)``).  Sans-I/O: no clock, no sockets.

Theory of operation
-------------------
* A budget is ``{limit, spent, epoch}``.  Nothing may be sent unless its cost was charged first
  (``try_charge`` / ``charge``), or reserved beforehand and committed (``reserve`` →
  ``commit`` / ``release``) when several senders race for one budget.
* Invariant, always: ``0 <= spent <= limit`` and, locally, ``spent + reserved <= limit`` except
  right after a merge lowered the limit (then headroom is simply zero).
* A missing budget means zero headroom: charging an unknown (context, peer) fails.
* Merge is a join: the higher epoch wins outright (its spent was reset at rotation, so an older
  epoch's spent must not leak into it); within one epoch the limit is the minimum and spent the
  maximum, clipped to that limit.  ``min(max spent, min limit)`` is symmetric in all the states
  merged, so the merge is commutative, associative and idempotent (tests/test_flow.py proves it
  with hypothesis).
* Epoch rotation resets spent to 0, keeps the limit, and makes reservations taken in the older
  epoch stale: committing one fails, releasing one is a no-op.

The charge fast path is one lock acquire, two additions and a compare, so Python callers reach
millions of charges per second (aura_core/benchsuite/receipts.py measures it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from .errors import FlowBudgetExceeded, InvalidValue, UsageError
from .ids import AuthorityId, ContextId

__all__ = [
    "COST_PUBLISH",
    "COST_CONNECT_DIRECT",
    "COST_CONNECT_RELAY",
    "COST_RELAY_FORWARD",
    "MAX_U64",
    "FlowBudget",
    "FlowAccount",
    "FlowLedger",
    "Reservation",
]

# Costs of observable operations (SPEC §4).
COST_PUBLISH: Final = 1
COST_CONNECT_DIRECT: Final = 2
COST_CONNECT_RELAY: Final = 3  # seed value
COST_RELAY_FORWARD: Final = 1

MAX_U64: Final = (1 << 64) - 1


def _u64(name: str, value: int) -> int:
    if type(value) is not int or not 0 <= value <= MAX_U64:  # bool is rejected on purpose
        raise InvalidValue(f"{name} must be an int in 0..2**64-1, got {value!r}")
    return value


def _cost(cost: int) -> int:
    if type(cost) is not int or not 0 < cost <= MAX_U64:
        raise InvalidValue(f"a cost must be an int in 1..2**64-1, got {cost!r}")
    return cost


@dataclass(frozen=True, slots=True)
class FlowBudget:
    """The replicated budget of one (context, peer): ``limit``, ``spent`` and ``epoch``.

    An immutable value: operations return a new budget.  ``spent <= limit`` always.
    """

    limit: int
    spent: int = 0
    epoch: int = 0

    def __post_init__(self) -> None:
        _u64("limit", self.limit)
        _u64("spent", self.spent)
        _u64("epoch", self.epoch)
        if self.spent > self.limit:
            raise InvalidValue(f"spent {self.spent} exceeds limit {self.limit}")

    @property
    def headroom(self) -> int:
        return self.limit - self.spent

    def can_charge(self, cost: int) -> bool:
        return self.spent + _cost(cost) <= self.limit

    def charge(self, cost: int) -> FlowBudget:
        """The budget after charging ``cost``; :class:`FlowBudgetExceeded` if it does not fit."""
        spent = self.spent + _cost(cost)
        if spent > self.limit:
            raise FlowBudgetExceeded("flow budget exhausted")
        return FlowBudget(self.limit, spent, self.epoch)

    def rotate(self, epoch: int) -> FlowBudget:
        """Enter ``epoch``: spent resets to 0.  Rotating to the current or an older epoch is a no-op."""
        _u64("epoch", epoch)
        if epoch <= self.epoch:
            return self
        return FlowBudget(self.limit, 0, epoch)

    def merge(self, other: FlowBudget) -> FlowBudget:
        """CRDT join (see the module docstring)."""
        if not isinstance(other, FlowBudget):
            raise InvalidValue("can only merge a FlowBudget")
        if other.epoch != self.epoch:
            return self if self.epoch > other.epoch else other
        limit = min(self.limit, other.limit)
        spent = min(max(self.spent, other.spent), limit)
        if limit == self.limit and spent == self.spent:
            return self
        return FlowBudget(limit, spent, self.epoch)


@dataclass(frozen=True, slots=True)
class Reservation:
    """Budget locked for one send by :meth:`FlowAccount.reserve`; commit or release it once."""

    account: FlowAccount
    cost: int
    epoch: int
    serial: int


class FlowAccount:
    """One live budget with reservations; every method is thread-safe.

    Created by :class:`FlowLedger`; hold on to it to skip the ledger's dict lookup on the hot
    path (``account.try_charge(COST_RELAY_FORWARD)``).
    """

    __slots__ = ("ctx", "peer", "limit", "spent", "reserved", "epoch", "_lock", "_open", "_serial")

    def __init__(self, ctx: ContextId, peer: AuthorityId, budget: FlowBudget) -> None:
        self.ctx = ctx
        self.peer = peer
        self.limit = budget.limit
        self.spent = budget.spent
        self.epoch = budget.epoch
        self.reserved = 0
        self._lock = threading.Lock()
        self._open: dict[int, int] = {}  # reservation serial -> cost (current epoch only)
        self._serial = 0

    def __repr__(self) -> str:
        return (f"FlowAccount({self.ctx}, {self.peer}, limit={self.limit}, spent={self.spent}, "
                f"reserved={self.reserved}, epoch={self.epoch})")

    # -- hot path ---------------------------------------------------------------------------
    def try_charge(self, cost: int) -> bool:
        """Charge ``cost`` if it fits (limit minus spent minus reserved); True if charged."""
        if type(cost) is not int or cost <= 0:
            _cost(cost)  # raises InvalidValue
        lock = self._lock
        lock.acquire()
        spent = self.spent + cost
        if spent + self.reserved > self.limit:
            lock.release()
            return False
        self.spent = spent
        lock.release()
        return True

    def charge(self, cost: int) -> None:
        """Charge ``cost`` or raise :class:`FlowBudgetExceeded` (nothing is charged then)."""
        if not self.try_charge(cost):
            raise FlowBudgetExceeded("flow budget exhausted")

    # -- reservations -----------------------------------------------------------------------
    def reserve(self, cost: int) -> Reservation:
        """Lock ``cost`` of headroom for a send in progress, or raise :class:`FlowBudgetExceeded`."""
        _cost(cost)
        with self._lock:
            if self.spent + self.reserved + cost > self.limit:
                raise FlowBudgetExceeded("flow budget exhausted")
            self.reserved += cost
            self._serial += 1
            self._open[self._serial] = cost
            return Reservation(self, cost, self.epoch, self._serial)

    def commit(self, reservation: Reservation) -> None:
        """Turn a reservation into a charge.

        Raises :class:`FlowBudgetExceeded` if the epoch rotated since (the reservation is stale)
        or a merge lowered the limit below what was reserved; nothing is charged then and the
        caller must not send.  :class:`UsageError` if it was already committed or released.
        """
        self._check_owner(reservation)
        with self._lock:
            if reservation.epoch != self.epoch:
                raise FlowBudgetExceeded("reservation expired: the epoch rotated")
            cost = self._open.pop(reservation.serial, None)
            if cost is None:
                raise UsageError("reservation already committed or released")
            self.reserved -= cost
            if self.spent + cost > self.limit:
                raise FlowBudgetExceeded("flow budget exhausted (limit lowered by a merge)")
            self.spent += cost

    def release(self, reservation: Reservation) -> None:
        """Give a reservation back (the send did not happen).  Stale reservations: no-op."""
        self._check_owner(reservation)
        with self._lock:
            if reservation.epoch != self.epoch:
                return
            cost = self._open.pop(reservation.serial, None)
            if cost is None:
                raise UsageError("reservation already committed or released")
            self.reserved -= cost

    def _check_owner(self, reservation: Reservation) -> None:
        if not isinstance(reservation, Reservation) or reservation.account is not self:
            raise UsageError("reservation belongs to another budget")

    # -- replication and epochs ---------------------------------------------------------------
    @property
    def headroom(self) -> int:
        return max(0, self.limit - self.spent - self.reserved)

    def snapshot(self) -> FlowBudget:
        """The replicated value (reservations are local and not part of it)."""
        with self._lock:
            return FlowBudget(self.limit, self.spent, self.epoch)

    def merge(self, other: FlowBudget) -> FlowBudget:
        """Join a replica's budget into this one; returns the merged value."""
        with self._lock:
            merged = FlowBudget(self.limit, self.spent, self.epoch).merge(other)
            self._adopt(merged)
            return merged

    def rotate(self, epoch: int) -> None:
        """Enter ``epoch`` (spent reset, reservations of older epochs stale).  Older: no-op."""
        _u64("epoch", epoch)
        with self._lock:
            if epoch > self.epoch:
                self._adopt(FlowBudget(self.limit, 0, epoch))

    def _adopt(self, b: FlowBudget) -> None:
        if b.epoch != self.epoch:
            self._open.clear()
            self.reserved = 0
        self.limit, self.spent, self.epoch = b.limit, b.spent, b.epoch


class FlowLedger:
    """Flow budgets of one authority, keyed by ``(ContextId, peer AuthorityId)``."""

    __slots__ = ("_accounts", "_lock")

    def __init__(self) -> None:
        # keyed by the 32 raw bytes ctx || peer: bytes hash in C, where the id classes' __hash__
        # and __eq__ are Python-level and would cost ~1 us per charge
        self._accounts: dict[bytes, FlowAccount] = {}
        self._lock = threading.Lock()

    def open(self, ctx: ContextId, peer: AuthorityId, limit: int, epoch: int = 0) -> FlowAccount:
        """Create the budget of (ctx, peer), or merge ``{limit, 0, epoch}`` into an existing one."""
        if not isinstance(ctx, ContextId) or not isinstance(peer, AuthorityId):
            raise InvalidValue("a flow budget is keyed by (ContextId, AuthorityId)")
        budget = FlowBudget(limit, 0, epoch)
        with self._lock:
            acct = self._accounts.get(_key(ctx, peer))
            if acct is None:
                acct = self._accounts[_key(ctx, peer)] = FlowAccount(ctx, peer, budget)
                return acct
        acct.merge(budget)
        return acct

    def account(self, ctx: ContextId, peer: AuthorityId) -> FlowAccount | None:
        return self._accounts.get(_key(ctx, peer))

    def try_charge(self, ctx: ContextId, peer: AuthorityId, cost: int) -> bool:
        """Charge-before-send; False (and nothing charged) when it does not fit or no budget."""
        try:
            acct = self._accounts.get(ctx._raw + peer._raw)  # type: ignore[attr-defined]
        except AttributeError:
            raise InvalidValue("a flow budget is keyed by (ContextId, AuthorityId)") from None
        if acct is None:
            _cost(cost)
            return False
        return acct.try_charge(cost)

    def charge(self, ctx: ContextId, peer: AuthorityId, cost: int) -> None:
        if not self.try_charge(ctx, peer, cost):
            raise FlowBudgetExceeded("flow budget exhausted")

    def reserve(self, ctx: ContextId, peer: AuthorityId, cost: int) -> Reservation:
        acct = self._accounts.get(_key(ctx, peer))
        if acct is None:
            _cost(cost)
            raise FlowBudgetExceeded("flow budget exhausted")
        return acct.reserve(cost)

    def commit(self, reservation: Reservation) -> None:
        reservation.account.commit(reservation)

    def release(self, reservation: Reservation) -> None:
        reservation.account.release(reservation)

    def headroom(self, ctx: ContextId, peer: AuthorityId) -> int:
        acct = self._accounts.get(_key(ctx, peer))
        return 0 if acct is None else acct.headroom

    def budget(self, ctx: ContextId, peer: AuthorityId) -> FlowBudget | None:
        acct = self._accounts.get(_key(ctx, peer))
        return None if acct is None else acct.snapshot()

    def merge(self, ctx: ContextId, peer: AuthorityId, budget: FlowBudget) -> FlowBudget:
        """Join a replica's budget; a budget unknown here is adopted as is."""
        if not isinstance(ctx, ContextId) or not isinstance(peer, AuthorityId):
            raise InvalidValue("a flow budget is keyed by (ContextId, AuthorityId)")
        if not isinstance(budget, FlowBudget):
            raise InvalidValue("can only merge a FlowBudget")
        with self._lock:
            acct = self._accounts.get(_key(ctx, peer))
            if acct is None:
                self._accounts[_key(ctx, peer)] = FlowAccount(ctx, peer, budget)
                return budget
        return acct.merge(budget)

    def rotate(self, ctx: ContextId, epoch: int) -> None:
        """Enter ``epoch`` for every peer budget of ``ctx``."""
        for acct in self.accounts(ctx):
            acct.rotate(epoch)

    def accounts(self, ctx: ContextId | None = None) -> list[FlowAccount]:
        with self._lock:
            return [a for a in self._accounts.values() if ctx is None or a.ctx == ctx]

    def __len__(self) -> int:
        return len(self._accounts)

    def __iter__(self) -> Iterator[tuple[ContextId, AuthorityId]]:
        with self._lock:
            return iter([(a.ctx, a.peer) for a in self._accounts.values()])


def _key(ctx: ContextId, peer: AuthorityId) -> bytes:
    if type(ctx) is not ContextId or type(peer) is not AuthorityId:
        raise InvalidValue("a flow budget is keyed by (ContextId, AuthorityId)")
    return bytes(ctx) + bytes(peer)
