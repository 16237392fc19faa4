"""The 1,000-authority load run (tests/relay_load.py) as a ``slow`` test: it reports figures
(printed; no timing asserts) and checks the properties that must hold under load."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_load_1000_authorities_bounded_queues_and_no_unauthenticated_forwarding(capsys):
    sys.path.insert(0, str(Path(__file__).parent))
    import relay_load

    report = relay_load.main(["--clients", "1000", "--seconds", "10", "--rate", "5000", "--attackers", "20"])
    with capsys.disabled():
        print("\nrelay load:", report)
    assert report["authenticated"] == 1000
    # nothing forwarded without authentication: every unauthenticated client was refused and
    # closed, and the relay forwarded no more than the authenticated clients sent
    assert report["auth_failures"] == 20
    assert all(o.startswith(("refused:7f02", "closed:")) for o in report["unauthenticated_outcomes"])
    assert report["forwards_total"] <= report["sent"]
    assert report["delivered"] <= report["forwards_total"]
    # queues stayed within their bound (frames per client x clients)
    assert report["peak_queue_depth"] <= report["queue_bound_frames"]
    assert report["drops"]["budget"] == 0 and report["drops"]["malformed"] == 0
