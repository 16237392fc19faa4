"""`aura-core demo` runs end to end and every one of its own checks passes.

The demo asserts the real properties itself (journals converge, both sides learn the other's
descriptor, one channel id, exactly-once in-order delivery on relay and direct paths, the
upgrade to direct, the epoch rotation, relay receipts that verify and sum to the forwards);
this test runs it as a user would and requires all of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.native

ROOT = Path(__file__).resolve().parent.parent


def test_demo_end_to_end():
    proc = subprocess.run([sys.executable, "-m", "aura_core", "demo", "--messages", "10"], cwd=ROOT,
                          capture_output=True, text=True, timeout=180, env=dict(os.environ))
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "FAILED" not in out
    assert "path now direct" in out and "over the relay" in out
    assert "epoch 1 → 2" in out
    last = out.strip().splitlines()[-1]
    assert last.endswith("checks passed, 0 failed")
    assert int(last.split()[-5]) >= 14
