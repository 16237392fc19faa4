"""Renders `aura-core bench --json` output as the "All groups" tables of docs/benchmarks.md.

``aura-core bench --json > bench.json && python bench/render_md.py bench.json``: one table per
group (contender, role, rate, ours ÷ it, goal), in the run's order; a group without rates
(a one-off measurement) becomes its note.
"""

from __future__ import annotations

import json
import sys

from aura_core.benchsuite._runner import _rate


def render(rows: list[dict]) -> str:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    out: list[str] = []
    for name, rs in groups.items():
        if all(r["rate"] is None for r in rs):
            out += [f"#### {name}  (one measurement, not a rate)", ""]
            out += [r["note"] for r in rs if r["note"]] + [""]
            continue
        out += [f"#### {name}  ({rs[0]['unit']}/s)", "",
                "| contender | role | rate/s | ours ÷ it | goal |", "|---|---|---:|---:|---|"]
        for r in rs:
            ratio = "—" if r["role"] == "ours" else (
                f"{r['ours_over_it']:.2f}x" if r["ours_over_it"] else "-")
            goal = "" if r["goal"] is None else (
                f"≥ {r['goal']:.2f}x " + ("met" if r["goal_met"] else "**MISS**"))
            note = f" ({r['note']})" if r["note"] else ""
            out.append(f"| {r['contender']}{note} | {r['role']} | {_rate(r['rate'])} | {ratio} | {goal} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print(render(json.load(f)))
