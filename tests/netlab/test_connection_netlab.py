"""PeerConnection across real NATs: relay first through the product's WebSocket relay, direct
QUIC behind cones, relay fallback behind symmetric NATs — with no message lost, duplicated or
reordered either way.

Each mode is one run of the ``aura-core demo --netlab`` story (aura_core/netlab/demo.py): in
``pub`` the product relay (Biscuit-authorised, receipts) and a rendezvous journal; in ``hA`` /
``hB`` an authority (aura_core/netlab/peer.py) that learns its reflexive address from coturn on
the socket it then punches from, publishes its descriptor by journal sync, opens the channel
over the relay, and exchanges numbered messages before, during and after the direct upgrade
(or its failure), and after an epoch rotation.

Run alone: ``sudo .venv/bin/python -m pytest tests/netlab/test_connection_netlab.py -m netlab -s``.
"""

from __future__ import annotations

import io
import json

import pytest

from aura_core.netlab.demo import DEFAULT_MODES, run_mode
from aura_core.netlab.lab import PAIRS

pytestmark = pytest.mark.netlab

COUNT = 100  # messages per exchange (five exchanges, each answered message by message)


# the default pair (cone-cone, symmetric-symmetric) runs through the CLI in test_demo_netlab.py
@pytest.mark.parametrize("name", [m for m in PAIRS if m not in DEFAULT_MODES])
def test_connection_through_nats(name: str) -> None:
    expect = PAIRS[name][3]
    trace = io.StringIO()
    r = run_mode(name, trace, messages=COUNT)
    print(trace.getvalue())
    print(json.dumps({who: {k: d.get(k) for k in ("path", "state", "data_relay_in",
                                                   "data_direct_in", "behaviour", "attempts")}
                      for who, d in r["peers"].items()}))
    assert set(r["peers"]) == {"alice", "bob"}
    for who, d in r["peers"].items():
        assert d["stage"] == "done", d
        # relay first, whatever happens next; every exchange exactly once, in order, both ways
        failed = [what for what, ok in d["checks"] if not ok]
        assert failed == [], (who, failed)
        assert sum("delivery" in what for what, _ in d["checks"]) == 5
        assert d["data_relay_in"] > 0, d
        assert d["path"] == expect, d
        if expect == "direct":
            assert d["data_direct_in"] > 0 and d["state"] == "direct", d
            assert d["time_to_direct"] is not None
        else:
            assert d["data_direct_in"] == 0 and d["state"] == "relay-only", d
            assert d["attempts"] >= 1 and d["fallback_after"] is not None
    a, b = r["peers"]["alice"], r["peers"]["bob"]
    assert a["channel_id"] == b["channel_id"]  # one channel (after the rotation, too)
    if name.startswith("symmetric") or "-symmetric" in name:
        assert "endpoint-dependent" in {a["behaviour"], b["behaviour"]}
    assert r["relay"]["verified"] and r["relay"]["forwarded"] > 0  # receipts cover every forward
    assert r["leftovers"] == [] and r["ok"], r.get("failed")


# behind symmetric NATs the stream rides the relay that dies; behind cones it is already direct
# and only the relay links (control, fallback) must come back
@pytest.mark.parametrize("name", ["symmetric-symmetric", "cone-cone"])
def test_relay_restart_mid_stream_through_nats(name: str) -> None:
    """pub's relay is SIGKILLed while both authorities stream numbered messages and started
    again on the same address: both relay links reconnect through their NATs and every message
    ``send`` accepted arrives exactly once, in order, on both sides (peer.stream_across_restart)."""
    expect = PAIRS[name][3]
    trace = io.StringIO()
    r = run_mode(name, trace, messages=20, restart_relay=True, timeout=25)
    print(trace.getvalue())
    print(json.dumps({who: d.get("restart") for who, d in r["peers"].items()}))
    assert set(r["peers"]) == {"alice", "bob"}
    for who, d in r["peers"].items():
        assert d["stage"] == "done", d
        failed = [what for what, ok in d["checks"] if not ok]
        assert failed == [], (who, failed)
        assert sum(what.startswith("restart:") for what, _ in d["checks"]) == 2
    a, b = r["peers"]["alice"]["restart"], r["peers"]["bob"]["restart"]
    for mine, theirs in ((a, b), (b, a)):
        assert mine["received"] == theirs["sent"]  # what was accepted is what arrived
        assert mine["connects"] >= 1 and mine["path"] == expect
        # messages were accepted before the kill, while the relay was gone, and after it came back
        assert mine["phases"]["before"] >= 50 and mine["phases"]["down"] > 0
        assert mine["phases"]["after"] >= 50
        if expect == "relay":  # the dead relay lost frames: the connection resent them
            assert mine["retransmitted"] > 0
    assert len(r["killed"]) == 1 and r["running"] == [], r
    assert "SIGKILL relay node" in trace.getvalue()
    assert r["relay"]["verified"]  # the restarted relay's receipts cover its forwards
    assert r["leftovers"] == [] and r["ok"], r.get("failed")
