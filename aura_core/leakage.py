"""Information-flow (leakage) budgets (seed 002 §4): ``{external, neighbor, in_group}``.

A :class:`LeakageBudget` is both what a context may still leak and what one message costs (its
annotation, e.g. ``LeakageBudget.parse("neighbor:1")`` as choreographies write it).  A send is
allowed only if every dimension of its cost fits the remaining budget; a successful send reduces
the budget.  :class:`LeakageLedger` keeps the remaining budget per context, with reservations so
the effect interpreter can charge atomically with the journal commit (reserve, then commit or
release).  Pure values and a single-owner ledger: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Final

from .errors import InvalidValue, LeakageBudgetExceeded, UsageError

__all__ = ["LeakageBudget", "NO_LEAKAGE", "LeakageLedger", "LeakageReservation", "DIMENSIONS"]

DIMENSIONS: Final = ("external", "neighbor", "in_group")
_U32: Final = (1 << 32) - 1


@dataclass(frozen=True, slots=True)
class LeakageBudget:
    """Metadata leakage per dimension (u32 each): a budget, or one message's annotation."""

    external: int = 0
    neighbor: int = 0
    in_group: int = 0

    def __post_init__(self) -> None:
        for name in DIMENSIONS:
            v = getattr(self, name)
            if type(v) is not int or not 0 <= v <= _U32:
                raise InvalidValue(f"leakage {name} must be an int in 0..2**32-1")

    @classmethod
    def parse(cls, text: str) -> LeakageBudget:
        """``"neighbor:1"``, ``"external:2,in_group:1"`` (the choreography annotation syntax)."""
        values = dict.fromkeys(DIMENSIONS, 0)
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, num = part.partition(":")
            name = name.strip()
            if not sep or name not in values or not num.strip().isdigit():
                raise InvalidValue(f"bad leakage annotation {text!r}")
            values[name] += int(num)
        return cls(**values)

    def allows(self, cost: LeakageBudget) -> bool:
        return (cost.external <= self.external and cost.neighbor <= self.neighbor
                and cost.in_group <= self.in_group)

    def charge(self, cost: LeakageBudget) -> LeakageBudget:
        if not self.allows(cost):
            raise LeakageBudgetExceeded("send blocked")
        return LeakageBudget(self.external - cost.external, self.neighbor - cost.neighbor,
                             self.in_group - cost.in_group)

    def __add__(self, other: LeakageBudget) -> LeakageBudget:
        return LeakageBudget(self.external + other.external, self.neighbor + other.neighbor,
                             self.in_group + other.in_group)

    @property
    def is_zero(self) -> bool:
        return not (self.external or self.neighbor or self.in_group)


NO_LEAKAGE: Final = LeakageBudget()


@dataclass(frozen=True, slots=True)
class LeakageReservation:
    ledger: LeakageLedger
    context: Hashable
    cost: LeakageBudget
    serial: int


class LeakageLedger:
    """Remaining leakage budget per context (a missing context has zero budget)."""

    def __init__(self) -> None:
        self._remaining: dict[Hashable, LeakageBudget] = {}
        self._reserved: dict[int, LeakageReservation] = {}
        self._serial = 0

    def set(self, context: Hashable, budget: LeakageBudget) -> None:
        self._remaining[context] = budget

    def remaining(self, context: Hashable) -> LeakageBudget:
        return self._remaining.get(context, NO_LEAKAGE)

    def reserve(self, context: Hashable, cost: LeakageBudget) -> LeakageReservation:
        """Take ``cost`` out of the budget now; commit or release the reservation later."""
        self._remaining[context] = self.remaining(context).charge(cost)
        self._serial += 1
        r = LeakageReservation(self, context, cost, self._serial)
        self._reserved[r.serial] = r
        return r

    def commit(self, r: LeakageReservation) -> None:
        if self._reserved.pop(r.serial, None) is None:
            raise UsageError("leakage reservation already settled")

    def release(self, r: LeakageReservation) -> None:
        if self._reserved.pop(r.serial, None) is not None:
            self._remaining[r.context] = self.remaining(r.context) + r.cost

    def record(self, context: Hashable, cost: LeakageBudget) -> None:
        self.commit(self.reserve(context, cost))
