"""Shared scaffolding of the NAT lab tests: the lab itself lives in the package
(aura_core/netlab, so a wheel can run it); here, netlab tests skip with the reason when the lab
cannot run (not root, a tool missing), and ``make_lab`` builds a ready lab for a mode pair."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from aura_core.netlab.lab import PAIRS, NatLab, missing_requirements


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    why = missing_requirements()
    if why:
        for item in items:
            if item.get_closest_marker("netlab") is not None:
                item.add_marker(pytest.mark.skip(reason=why))


@contextlib.contextmanager
def _lab(name: str) -> Iterator[NatLab]:
    mode_a, mode_b, clash, _ = PAIRS[name]
    with NatLab(mode_a, mode_b, clash=clash) as lab:
        lab.wait_ready()
        yield lab


@pytest.fixture
def make_lab() -> Callable[[str], contextlib.AbstractContextManager[NatLab]]:
    """``with make_lab("cone-cone") as lab:`` — built, coturn answering, removed afterwards."""
    return _lab
