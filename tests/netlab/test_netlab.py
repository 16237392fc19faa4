"""Hole punching proven through real NATs (network namespaces + nftables + coturn).

Each mode builds a fresh lab (aura_core/netlab/lab.py), then runs ``AURA_NETLAB_TRIALS`` trials
(default 20): two agents (aura_core/netlab/punch_agent.py) learn their reflexive addresses from coturn,
exchange them through this orchestrator (standing in for descriptor exchange), start punching at
the same moment, and then run a Noise IKpsk2 handshake and 1,000 messages each way through its
datagram session over the direct path — or, when the punch window closes, 200 authenticated
datagrams over the relay stand-in.  Success rate and time-to-direct
(median, p95) per mode go to ``<tmp>/netlab_stats.json`` and are printed.

Run alone: ``sudo .venv/bin/python -m pytest tests/netlab -m netlab -s``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aura_core.keys import IdentityKey
from aura_core.netlab.lab import (PAIRS, PUB_STUN, RELAY, STUN_PORT, NatLab, leftovers,
                                  read_json, write_json)

pytestmark = [pytest.mark.netlab]

TRIALS = int(os.environ.get("AURA_NETLAB_TRIALS", "20"))
WINDOW = 1.5  # punch window, seconds (rust-libp2p punches up to 5 s; our lab RTT is < 1 ms)
PREPUNCH = float(os.environ.get("AURA_NETLAB_PREPUNCH", "0.2"))  # low-TTL pre-punch (lab.py)
COUNT = 1000


def run_trial(lab: NatLab, idle: dict | None = None) -> dict:
    seeds = [os.urandom(32), os.urandom(32)]
    pubs = [IdentityKey.from_seed(s).public.ed25519 for s in seeds]
    nonces = [os.urandom(32), os.urandom(32)]
    context_key, context = os.urandom(32), os.urandom(16)
    agents = []
    for i, host in enumerate(("hA", "hB")):
        agents.append(lab.agent(host, [
            "--seed", seeds[i].hex(), "--nonce", nonces[i].hex(),
            "--peer-pub", pubs[1 - i].hex(), "--peer-nonce", nonces[1 - i].hex(),
            "--context-key", context_key.hex(), "--context", context.hex(),
            *(["--initiator"] if i == 0 else []),
            *(x for ip in PUB_STUN for x in ("--stun", f"{ip}:{STUN_PORT}")),
            "--relay", f"{RELAY[0]}:{RELAY[1]}", "--count", str(COUNT)]))
    try:
        stun = [read_json(p, 20) for p in agents]
        for i, p in enumerate(agents):
            write_json(p, {"candidates": stun[1 - i]["mapped"], "window": WINDOW,
                       "prepunch": PREPUNCH})
        punched = [read_json(p, WINDOW + 10) for p in agents]
        for p in agents:
            write_json(p, {"cmd": "stop"})
        for p in agents:
            assert read_json(p, 10)["stage"] == "stopped"
        direct = all(r["direct"] for r in punched)
        for p in agents:
            write_json(p, {"cmd": "data" if direct else "relay"})
        data = [read_json(p, 15) for p in agents]
        after = None
        if direct:
            for p in agents:
                write_json(p, idle or {"cmd": "exit"})
            if idle:
                after = [read_json(p, idle["seconds"] + 10) for p in agents]
        for p in agents:
            p.wait(timeout=10)
    finally:
        for p in agents:
            if p.poll() is None:
                p.kill()
                p.wait()
    return {"stun": stun, "punch": punched, "data": data, "direct": direct, "after_idle": after,
            "time_to_direct": max(r["elapsed"] for r in punched) if direct else None,
            "gave_up_after": None if direct else max(r["elapsed"] for r in punched)}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


def run_mode(make_lab, name: str, trials: int) -> dict:
    expect = PAIRS[name][3]
    runs = []
    with make_lab(name) as lab:
        for _ in range(trials):
            runs.append(run_trial(lab))
    times = [r["time_to_direct"] for r in runs if r["direct"]]
    return {
        "mode": name, "expect": expect, "trials": trials,
        "direct": len(times), "success_rate": len(times) / trials,
        "time_to_direct_median": statistics.median(times) if times else None,
        "time_to_direct_p95": _pct(times, 0.95) if times else None,
        "behaviour": sorted({s["behaviour"] for r in runs for s in r["stun"]}),
        "runs": runs,
    }


@pytest.fixture(scope="module")
def stats_file(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("netlab") / "netlab_stats.json"
    summary: dict[str, dict] = {}
    yield path, summary
    path.write_text(json.dumps(summary, indent=1))
    print(f"\nnetlab stats ({TRIALS} trials per mode) -> {path}")
    for name, s in summary.items():
        med, p95 = s["time_to_direct_median"], s["time_to_direct_p95"]
        print(f"  {name:22s} expect {s['expect']:6s} direct {s['direct']}/{s['trials']}"
              f" ({s['success_rate']:.0%})" + (f"  time-to-direct median {med * 1e3:.0f} ms"
                                                 f" p95 {p95 * 1e3:.0f} ms" if med else ""))


@pytest.mark.parametrize("name", list(PAIRS))
def test_mode(name: str, stats_file, make_lab) -> None:
    path, summary = stats_file
    t0 = time.monotonic()
    s = run_mode(make_lab, name, TRIALS)
    s["seconds"] = time.monotonic() - t0
    summary[name] = {k: v for k, v in s.items() if k != "runs"}
    (path.parent / f"{name}.json").write_text(json.dumps(s, indent=1))
    for r in s["runs"]:
        for d in r["data"]:
            # whichever path was taken carried every datagram exactly once, authenticated
            assert d["via"] == ("direct" if r["direct"] else "relay"), r
            assert (d["lost"], d["dups"], d["bad"]) == (0, 0, 0), r
            if d["via"] == "direct":
                assert d["received"] == COUNT
        for pr in r["punch"]:  # the PeerConnectionActor drove it: relay first, then settled
            assert pr["state"] == ("direct" if pr["direct"] else "relay-only"), pr
            assert pr["transitions"][0] == ["relay-only", "upgrading"], pr
        if r["direct"]:  # both ends derived the same Noise channel from the handshake
            assert r["data"][0]["noise"]["channel_id"] == r["data"][1]["noise"]["channel_id"]
    if s["expect"] == "direct":
        assert s["direct"] == TRIALS, f"{name}: {s['direct']}/{TRIALS} direct"
    else:
        assert s["direct"] == 0, f"{name}: unexpectedly direct"
        for r in s["runs"]:
            # failure detected within the punch window (plus one slice), not later
            assert r["gave_up_after"] <= WINDOW + 0.2, r["gave_up_after"]
    if name.startswith("symmetric") or "-symmetric" in name:
        assert "endpoint-dependent" in s["behaviour"]


@pytest.mark.parametrize("keepalive", [0.5, 0.0], ids=["with-keepalive", "without"])
def test_keepalive_holds_the_nat_mapping(keepalive: float, make_lab) -> None:
    """Routers forget idle UDP flows after 2 s here; 0.5 s keepalives keep the path open."""
    with make_lab("cone-cone") as lab:
        lab.set_udp_timeouts(2, 2)
        r = run_trial(lab, idle={"cmd": "idle", "seconds": 4.0, "keepalive": keepalive,
                                 "responder_delay": 0.3})
    assert r["direct"]
    lost = [a["lost"] for a in r["after_idle"]]
    print(f"after 4 s idle, keepalive {keepalive}: lost {lost}, "
          f"keepalives sent {[a['keepalives'] for a in r['after_idle']]}")
    if keepalive:
        assert lost == [0, 0] and all(a["dups"] == 0 for a in r["after_idle"])
    else:
        # the mapping expired: the initiator's messages hit a closed NAT until the responder
        # sends again (they are lost), which is what keepalives are for
        assert lost[1] == 100


def test_lab_removed_on_sigterm() -> None:
    script = ("import time; from aura_core.netlab import NatLab\n"
              "lab = NatLab('fullcone', 'symmetric').__enter__()\n"
              "print(lab.tag, *(p.pid for p in lab.procs), flush=True)\n"
              "time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        tag, *pids = p.stdout.readline().split()  # type: ignore[union-attr]
        assert len(leftovers(tag)) == 5 and pids
        p.send_signal(15)
        assert p.wait(timeout=15) == 128 + 15
    finally:
        if p.poll() is None:
            p.kill()
    assert leftovers(tag) == []
    for pid in pids:  # coturn and the relay were stopped, not orphaned
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


def test_lab_removed_on_failure() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with NatLab("cone", "symmetric") as lab:
            tag = lab.tag
            assert len(leftovers(tag)) == 5
            raise RuntimeError("boom")
    assert leftovers(tag) == []
