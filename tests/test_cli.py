"""The command line: version, selftest, vectors, bench."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from aura_core.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aura_core", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ))


def test_version(capsys):
    assert main(["version"]) == 0
    assert "aura-core" in capsys.readouterr().out


def test_selftest_passes_and_prints_the_closing_line():
    proc = _run("selftest")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    passed, failed = (int(part.split()[0]) for part in last.split(", "))
    assert passed > 0 and failed == 0


def test_selftest_detects_a_corrupted_vector(tmp_path, monkeypatch, capsys):
    from aura_core import selftest, vectors_foundation
    doc = vectors_foundation.generate()
    doc["cases"][0]["authority_id"] = "authority-00000000-0000-0000-0000-000000000000"

    def corrupted():
        monkeypatch.setattr(vectors_foundation.resources, "files",
                            lambda _pkg: tmp_path)
        (tmp_path / vectors_foundation.FILE).write_text(json.dumps(doc))
        return vectors_foundation.check()

    monkeypatch.setattr(selftest, "CHECKS", {"corrupt": "x:y"})
    monkeypatch.setattr(selftest, "_load", lambda spec: corrupted)
    import io
    out = io.StringIO()
    passed, failed = selftest.run(out)
    assert failed == 1 and "FAIL corrupt: identity[0]" in out.getvalue()


def test_vectors_regenerate_identically(tmp_path):
    assert main(["vectors", "--out", str(tmp_path)]) == 0
    from aura_core.selftest import GENERATORS
    for name in GENERATORS:
        shipped = (ROOT / "aura_core" / "vectors" / name).read_text()
        assert (tmp_path / name).read_text() == shipped, name


def test_bench_runs_a_group_and_reports_ratios():
    proc = _run("bench", "hashing/hash32 200 B", "--json", "--seconds", "0.02", "--samples", "1")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    roles = {r["role"] for r in rows}
    assert "ours" in roles and len(rows) >= 2
    assert all(r["rate"] is None or r["rate"] > 0 for r in rows)
    assert any(r["ours_over_it"] for r in rows if r["role"] != "ours")


def test_bench_rejects_unknown_filter():
    assert _run("bench", "no-such-group-anywhere").returncode == 2
