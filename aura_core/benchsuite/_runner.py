"""Times the contenders of benchmark groups and reports medians and ratios (``aura-core bench``)."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from . import Contender, Group, Skipped

__all__ = ["Measurement", "measure", "run_groups", "format_table"]


@dataclass(frozen=True)
class Measurement:
    group: str
    contender: str
    role: str
    rate: float | None  # operations per second (median of samples); None when skipped
    unit: str
    samples: int
    note: str = ""


def _calibrate(run: Callable[[], int], sample_seconds: float,
               clock: Callable[[], float]) -> int:
    """How many calls of ``run`` fill one sample of about ``sample_seconds``."""
    batches = 1
    while True:
        t0 = clock()
        for _ in range(batches):
            run()
        elapsed = clock() - t0
        if elapsed >= sample_seconds / 4 or batches >= 1 << 20:
            break
        batches *= 4
    return max(1, int(batches * sample_seconds / elapsed)) if elapsed > 0 else batches


def _sample(run: Callable[[], int], batches: int, clock: Callable[[], float]) -> float:
    t0 = clock()
    ops = 0
    for _ in range(batches):
        ops += run()
    elapsed = clock() - t0
    return ops / elapsed if elapsed > 0 else float("inf")


def measure(run: Callable[[], int], *, sample_seconds: float = 0.2, samples: int = 5,
            clock: Callable[[], float] = time.perf_counter) -> tuple[float, int]:
    """Median operations/second of ``run`` over ``samples`` timed samples of ~``sample_seconds``."""
    batches = _calibrate(run, sample_seconds, clock)
    return statistics.median(_sample(run, batches, clock) for _ in range(samples)), samples


def run_groups(groups: list[Group], *, sample_seconds: float = 0.2, samples: int = 5,
               progress: TextIO | None = sys.stderr,
               clock: Callable[[], float] = time.perf_counter) -> list[Measurement]:
    """Measure every contender of every group.

    Contenders of one group are measured *interleaved*: each round takes one sample of every
    contender (in rotating order), so on a shared, noisy machine a burst of load hits all of
    them alike and the ratios stay meaningful.  The rate kept is the median over rounds.
    """
    results: list[Measurement] = []
    total = len(groups)
    for n, group in enumerate(groups, 1):
        live = [c for c in group.contenders if isinstance(c, Contender)]
        if progress is not None:
            progress.write(f"\r[{n}/{total}] {group.key}".ljust(78)[:78])
            progress.flush()
        batches = {c.name: _calibrate(c.run, sample_seconds, clock) for c in live}
        rates: dict[str, list[float]] = {c.name: [] for c in live}
        for r in range(samples):
            shift = r % len(live) if live else 0
            for c in live[shift:] + live[:shift]:
                rates[c.name].append(_sample(c.run, batches[c.name], clock))
        for c in group.contenders:
            if isinstance(c, Skipped):
                results.append(Measurement(group.key, c.name, c.role, None, group.unit, 0, c.reason))
            else:
                results.append(Measurement(group.key, c.name, c.role,
                                           statistics.median(rates[c.name]), group.unit, samples))
    if progress is not None:
        progress.write("\r" + " " * 78 + "\r")
        progress.flush()
    return results


def ratios(groups: list[Group], results: list[Measurement]) -> list[dict[str, object]]:
    """Rows with each contender's rate and the ratio ours/contender, goals checked."""
    by_group: dict[str, list[Measurement]] = {}
    for m in results:
        by_group.setdefault(m.group, []).append(m)
    rows: list[dict[str, object]] = []
    for group in groups:
        ms = by_group.get(group.key, [])
        ours = next((m.rate for m in ms if m.role == "ours" and m.rate), None)
        for m in ms:
            ratio = ours / m.rate if (ours and m.rate and m.role != "ours") else None
            goal = group.goals.get(m.contender)
            rows.append({
                "group": m.group, "contender": m.contender, "role": m.role, "unit": m.unit,
                "rate": m.rate, "ours_over_it": ratio, "goal": goal,
                "goal_met": None if goal is None or ratio is None else ratio >= goal,
                "note": m.note,
            })
    return rows


def _rate(v: float | None) -> str:
    if v is None:
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.2f}{suffix}"
    return f"{v:.1f}"


def format_table(rows: list[dict[str, object]]) -> str:
    lines = [f"{'group':34} {'contender':26} {'role':5} {'rate/s':>9} {'ours/it':>8} {'goal':>6}  note"]
    for r in rows:
        ratio = r["ours_over_it"]
        goal = r["goal"]
        mark = "" if r["goal_met"] is None else (" ok" if r["goal_met"] else " MISS")
        lines.append(
            f"{str(r['group'])[:34]:34} {str(r['contender'])[:26]:26} {str(r['role']):5} "
            f"{_rate(r['rate']):>9} {('%.2fx' % ratio) if ratio else '-':>8} "
            f"{('%.2fx' % goal) if goal else '':>6}{mark}  {r['note']}"
        )
    return "\n".join(lines)
