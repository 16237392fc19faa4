"""``aura-core demo --netlab`` as a user runs it: behind cones the channel ends direct, behind
symmetric NATs it stays on the relay, every message arrives in order, no namespace is left.
Without root or without the lab's tools it says what is missing and exits non-zero."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from aura_core.netlab.lab import leftovers


def _demo(*args: str, timeout: float = 240, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aura_core", "demo", *args], capture_output=True,
                          text=True, timeout=timeout, **kw)  # type: ignore[call-overload]


@pytest.mark.netlab
def test_demo_netlab_default_modes() -> None:
    proc = _demo("--netlab", "--messages", "30")
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "Traceback" not in out + proc.stderr and "FAILED" not in out
    summary = out[out.index("\nsummary"):]
    rows = {line.split()[0]: line for line in summary.splitlines()[2:] if line.startswith("  ")}
    cone, sym = rows["cone-cone"], rows["symmetric-symmetric"]
    assert re.search(r"direct \(expected direct\)\s+300 ok\s+[\d.]+ s\s+[\d.]+ s\s+ok$", cone), cone
    assert re.search(r"relay \(expected relay\)\s+300 ok\s+[\d.]+ s\s+fallback \(\d attempts?, "
                     r"[\d.]+ s\)\s+ok$", sym), sym
    assert out.rstrip().endswith("2 of 2 modes as expected")
    # the trace says what happened: STUN saw each NAT, the symmetric pair fell back
    assert "mapping endpoint-independent" in out and "mapping endpoint-dependent" in out
    assert "path now direct" in out and "relay fallback" in out
    assert out.count("epoch 1 → 2") == 2
    # relay first in both modes; direct frames only behind the cones (cone-cone runs first)
    received = [(int(r), int(d)) for r, d in
                re.findall(r"received (\d+) frames via the relay, (\d+) direct", out)]
    assert len(received) == 4 and all(r > 0 for r, _ in received)
    assert all(d > 0 for _, d in received[:2]) and all(d == 0 for _, d in received[2:])
    tags = re.findall(r"namespaces (al\d+)-\{", out)
    assert len(tags) == 2 and all(leftovers(tag) == [] for tag in tags)
    assert out.count("removed: 0 namespace(s) left") == 2


def test_demo_netlab_names_missing_tools(tmp_path) -> None:
    proc = _demo("--netlab", timeout=60, env={**os.environ, "PATH": str(tmp_path)})
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    if os.geteuid() == 0:
        assert "`ip`, `nft`, `turnserver` on PATH" in proc.stderr and "apt-get install" in proc.stderr
    else:
        assert "netlab needs root" in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to drop to an unprivileged user")
def test_demo_netlab_names_missing_root() -> None:
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           sys.executable, "-m", "aura_core", "demo", "--netlab"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "aura-core demo --netlab: netlab needs root (network namespaces, nftables)"


def test_demo_modes_need_netlab() -> None:
    proc = _demo("--modes", "cone-cone", timeout=60)
    assert proc.returncode != 0 and "--modes needs --netlab" in proc.stderr
    proc = _demo("--netlab", "--modes", "cone-cone,nat-free", timeout=60)
    if proc.returncode == 2 and "unknown mode" in proc.stderr:
        assert "nat-free" in proc.stderr and "choose from cone-cone" in proc.stderr
    else:  # no lab here: the missing requirement is reported first
        assert proc.returncode == 2 and "netlab needs" in proc.stderr
