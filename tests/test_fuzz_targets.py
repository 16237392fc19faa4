"""Every atheris target in tests/fuzz has the shape tests/fuzz/run_all.py (and CI) relies on: a
non-empty ``seeds()`` corpus of bytes and a ``run_corpus`` that accepts it without an error."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

TARGETS = sorted(p.stem for p in (Path(__file__).parent / "fuzz").glob("fuzz_*.py"))


@pytest.mark.native
@pytest.mark.parametrize("name", TARGETS)
def test_target_runs_over_its_own_seeds(name: str) -> None:
    mod = importlib.import_module(f"tests.fuzz.{name}")
    seeds = mod.seeds()
    assert seeds and all(isinstance(s, bytes) for s in seeds)
    assert mod.run_corpus(seeds) == len(seeds)
    assert callable(mod.main)
