"""Benchmark suites shared by ``aura-core bench`` and ``bench/`` (pytest-benchmark).

A suite module in this package defines ``groups() -> list[Group]``.  A group measures one
workload with several contenders: ``ours`` (aura_core), ``peer`` (another implementation run
in the same process) and ``limit`` (the raw primitive: the physical ceiling on this machine).
Each contender is a callable that does one batch of work and returns how many operations it
did; the runner times batches, keeps the median rate, and reports each contender's rate as a
ratio to ours, with the goals from the issues checked.

Peers are optional dependencies (the ``bench`` extra): a group's factory skips a contender
whose peer is not installed (``skip("why")``), and the report says so.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Contender", "Group", "Skipped", "discover", "skip"]

Role = Literal["ours", "peer", "limit"]


@dataclass(frozen=True)
class Contender:
    """One implementation of a group's workload.

    ``run()`` performs one batch and returns the number of operations it performed (frames,
    handshakes, objects...).  It must be repeatable: set-up belongs in the group factory.
    """

    name: str
    role: Role
    run: Callable[[], int]


@dataclass(frozen=True)
class Skipped:
    name: str
    role: Role
    reason: str


@dataclass
class Group:
    """A workload measured across contenders.

    ``goals`` maps a contender name to the minimum ratio ours/that contender must reach
    (e.g. ``{"noiseprotocol": 1.8, "C limit": 0.9}``).
    """

    suite: str
    name: str
    unit: str
    contenders: list[Contender | Skipped] = field(default_factory=list)
    goals: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.suite}/{self.name}"

    def add(self, name: str, role: Role, factory: Callable[[], Callable[[], int]]) -> None:
        """Add a contender built by ``factory``; ImportError or :class:`SkipContender` skips it."""
        try:
            self.contenders.append(Contender(name, role, factory()))
        except SkipContender as exc:
            self.contenders.append(Skipped(name, role, str(exc)))
        except ImportError as exc:
            self.contenders.append(Skipped(name, role, f"not installed: {exc.name or exc}"))


class SkipContender(Exception):
    """Raised by a contender factory that cannot run here."""


def skip(reason: str) -> SkipContender:
    return SkipContender(reason)


def discover(selected: list[str] | None = None) -> list[Group]:
    """Every group of every suite module in this package (optionally filtered by substring)."""
    groups: list[Group] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{__name__}.{info.name}")
            factory = getattr(module, "groups", None)
            made = factory() if factory is not None else []
        except Exception as exc:  # one broken suite must not take the others down
            broken = Group(info.name, "<suite failed to load>", "-")
            broken.contenders.append(Skipped("suite", "ours", f"{type(exc).__name__}: {exc}"))
            made = [broken]
        for group in made:
            if selected and not any(s in group.key for s in selected):
                continue
            groups.append(group)
    return groups
