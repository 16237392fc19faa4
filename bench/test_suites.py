"""pytest-benchmark front-end over the shared suites in aura_core.benchsuite.

Every contender of every group becomes one benchmark; compare them with
``pytest bench/ --benchmark-group-by=param:group``.  Ratios and goals: ``aura-core bench``.
"""

from __future__ import annotations

import pytest

from aura_core.benchsuite import Contender, discover

_GROUPS = discover()
_CASES = [
    pytest.param(g, c, id=f"{g.key}::{c.name}")
    for g in _GROUPS
    for c in g.contenders
    if isinstance(c, Contender)
]


@pytest.mark.parametrize(("group", "contender"), _CASES)
def test_bench(benchmark, group, contender):
    benchmark.group = group.key
    benchmark.extra_info.update(role=contender.role, unit=group.unit)
    ops = benchmark(contender.run)
    assert ops > 0
    benchmark.extra_info["ops_per_round"] = ops
