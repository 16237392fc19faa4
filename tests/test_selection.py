"""PeerConnectionActor: relay first, bounded upgrades, generations, recoverability (seed 001 §3.2)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aura_core.errors import InvalidValue
from aura_core.selection import (TRANSITIONS, AttemptBudget, AttemptFailed, AttemptSucceeded,
                                 BackoffWindow, CancelAttempt, CandidateGeneration,
                                 CandidatesUpdated, ConnState, DirectLost, LocalBinding,
                                 NetworkChanged, NetworkGeneration, PeerConnectionActor,
                                 StartAttempt, UseDirect, UseRelay)

S = ConnState
CANDS = (("203.0.113.7", 4000), ("198.51.100.2", 4001))
N0, N1 = NetworkGeneration(0), NetworkGeneration(1)
WIFI0 = LocalBinding("wlan0", ("192.168.1.5", 5000), N0)


def drain(actor: PeerConnectionActor) -> list:
    out = []
    while (a := actor.next_action()) is not None:
        out.append(a)
    return out


def fresh(**kw) -> PeerConnectionActor:
    actor = PeerConnectionActor(0.0, rand=lambda: 0.0, **kw)
    actor.handle(NetworkChanged(N0, frozenset({WIFI0})), 0.0)
    assert drain(actor) == [UseRelay("relay first")]  # the relay is the baseline from the start
    return actor


def upgrading(**kw) -> tuple[PeerConnectionActor, StartAttempt]:
    actor = fresh(**kw)
    actor.handle(CandidatesUpdated(CandidateGeneration(1), CANDS), 1.0)
    (start,) = drain(actor)
    assert isinstance(start, StartAttempt) and actor.state is S.UPGRADING
    return actor, start


def test_relay_only_until_candidates_then_upgrade_to_direct():
    actor, start = upgrading()
    assert start.candidates == CANDS and start.deadline == 1.0 + actor.attempt_timeout
    assert start.network_generation == N0 and start.candidate_generation.value == 1
    actor.handle(AttemptSucceeded(start.attempt, CANDS[0], WIFI0), 1.2)
    assert drain(actor) == [UseDirect(CANDS[0], WIFI0)] and actor.state is S.DIRECT
    assert actor.get_timer() is None
    assert [h[1:3] for h in actor.history] == [(S.RELAY_ONLY, S.UPGRADING), (S.UPGRADING, S.DIRECT)]


def test_reflexive_success_without_local_provenance_does_not_promote():
    actor, start = upgrading()
    actor.handle(AttemptSucceeded(start.attempt, CANDS[0], None), 1.1)
    assert actor.state is S.DEGRADED and drain(actor) == []
    # a binding from an older network generation is stale, too
    actor2, start2 = upgrading()
    actor2.handle(NetworkChanged(N1, frozenset({LocalBinding("eth0", ("10.0.0.2", 1), N1)})), 1.1)
    (cancel, start3) = drain(actor2)
    assert cancel == CancelAttempt(start2.attempt) and isinstance(start3, StartAttempt)
    actor2.handle(AttemptSucceeded(start3.attempt, CANDS[0], WIFI0), 1.2)  # WIFI0 is from N0
    assert actor2.state is S.DEGRADED


def test_failures_back_off_then_budget_exhausts_to_relay_only():
    actor, start = upgrading(budget=AttemptBudget(3), backoff=BackoffWindow(base=1.0, jitter=0.0))
    delays = []
    attempt = start
    for n in range(3):
        t = actor.now
        actor.handle(AttemptFailed(attempt.attempt), t + 0.5)
        if n < 2:
            assert actor.state is S.DEGRADED
            delays.append(actor.get_timer() - (t + 0.5))
            actor.handle_timer(actor.get_timer() - 1e-6)  # not yet
            assert actor.state is S.DEGRADED
            actor.handle_timer(actor.get_timer())
            (attempt,) = drain(actor)
            assert isinstance(attempt, StartAttempt) and actor.state is S.UPGRADING
    assert delays == [1.0, 2.0]  # exponential
    assert actor.state is S.RELAY_ONLY and actor.get_timer() is None and drain(actor) == []
    # a new candidate generation resets the budget: a fresh cycle starts at once
    actor.handle(CandidatesUpdated(CandidateGeneration(2), CANDS), 20.0)
    (again,) = drain(actor)
    assert isinstance(again, StartAttempt) and actor.budget.used == 1
    assert actor.backoff.failures == 0


def test_attempt_deadline_enforced_by_actor():
    actor, start = upgrading()
    actor.handle_timer(start.deadline)
    assert drain(actor) == [CancelAttempt(start.attempt)] and actor.state is S.DEGRADED
    # the late result of the timed-out attempt is ignored
    actor.handle(AttemptSucceeded(start.attempt, CANDS[0], WIFI0), start.deadline + 0.1)
    assert actor.state is S.DEGRADED


def test_stale_results_ignored_after_generation_change():
    actor, start = upgrading()
    actor.handle(CandidatesUpdated(CandidateGeneration(2), CANDS[:1]), 1.5)
    cancel, new = drain(actor)
    assert cancel == CancelAttempt(start.attempt) and new.candidates == CANDS[:1]
    actor.handle(AttemptSucceeded(start.attempt, CANDS[0], WIFI0), 1.6)
    assert actor.state is S.UPGRADING  # old attempt's success does not count
    actor.handle(AttemptFailed(start.attempt), 1.6)
    assert actor.state is S.UPGRADING
    # a repeated (not newer) candidate generation changes nothing
    actor.handle(CandidatesUpdated(CandidateGeneration(2), CANDS), 1.7)
    assert drain(actor) == [] and actor.candidates == CANDS[:1]


def test_network_change_keeps_direct_if_binding_survives_else_relay_and_upgrade():
    actor, start = upgrading()
    actor.handle(AttemptSucceeded(start.attempt, CANDS[0], WIFI0), 1.1)
    drain(actor)
    survived = LocalBinding("wlan0", ("192.168.1.5", 5000), N1)
    actor.handle(NetworkChanged(N1, frozenset({survived, LocalBinding("eth0", ("10.0.0.2", 1), N1)})), 2.0)
    assert actor.state is S.DIRECT and drain(actor) == [] and actor.direct.binding == survived
    n2 = NetworkGeneration(2)
    actor.handle(NetworkChanged(n2, frozenset({LocalBinding("eth0", ("10.0.0.2", 1), n2)})), 3.0)
    relay, start2 = drain(actor)
    assert isinstance(relay, UseRelay) and isinstance(start2, StartAttempt)
    assert actor.state is S.UPGRADING and start2.network_generation == n2


def test_direct_lost_degrades_then_retries():
    actor, start = upgrading(backoff=BackoffWindow(base=2.0, jitter=0.0))
    actor.handle(AttemptSucceeded(start.attempt, CANDS[0], WIFI0), 1.1)
    drain(actor)
    actor.handle(DirectLost(), 5.0)
    assert drain(actor) == [UseRelay("keepalives unanswered")] and actor.state is S.DEGRADED
    assert actor.get_timer() == 7.0
    actor.handle_timer(7.0)
    assert isinstance(drain(actor)[0], StartAttempt)


def test_no_candidates_stays_relay_only():
    actor = fresh()
    actor.handle(CandidatesUpdated(CandidateGeneration(1), ()), 1.0)
    assert actor.state is S.RELAY_ONLY and drain(actor) == []


def test_backoff_jitter_bounds_and_cap():
    b = BackoffWindow(base=1.0, factor=2.0, cap=8.0, jitter=0.5)
    got = [b.fail(lambda: 1.0) for _ in range(6)]
    assert got == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.fail(lambda: 0.0) == 1.0
    with pytest.raises(InvalidValue):
        BackoffWindow(base=0)
    with pytest.raises(InvalidValue):
        AttemptBudget(0)


def test_table_only_names_real_handlers():
    for (state, event), handler in TRANSITIONS.items():
        assert isinstance(state, ConnState) and callable(getattr(PeerConnectionActor, handler))


EVENTS = st.one_of(
    st.builds(CandidatesUpdated, st.builds(CandidateGeneration, st.integers(0, 4)),
              st.sampled_from([(), CANDS])),
    st.builds(NetworkChanged, st.builds(NetworkGeneration, st.integers(0, 4)),
              st.just(frozenset({WIFI0}))),
    st.builds(AttemptSucceeded, st.integers(0, 8), st.just(CANDS[0]),
              st.sampled_from([None, WIFI0])),
    st.builds(AttemptFailed, st.integers(0, 8)),
    st.builds(DirectLost),
    st.just("timer"),
)


@settings(max_examples=300)
@given(st.lists(EVENTS, max_size=40))
def test_invariants_under_random_event_sequences(events):
    actor = PeerConnectionActor(0.0, rand=lambda: 0.5)
    now = 0.0
    starts = 0
    last_gen = (actor.candidate_generation, actor.network_generation)
    for ev in events:
        now += 0.3
        if ev == "timer":
            t = actor.get_timer()
            if t is not None:
                now = max(now, t)
            actor.handle_timer(now)
        else:
            actor.handle(ev, now)
        gen = (actor.candidate_generation, actor.network_generation)
        if gen != last_gen:
            starts = 0
            last_gen = gen
        for a in drain(actor):
            if isinstance(a, StartAttempt):
                starts += 1
                assert a.deadline > now - 1e-9
        # the budget bounds attempts per generation
        assert starts <= actor.budget.limit
        # direct only with a recoverable binding; a timer whenever an attempt or retry is pending
        if actor.state is S.DIRECT:
            assert actor.direct is not None and actor.recoverable(actor.direct.binding)
        if actor.state in (S.UPGRADING, S.DEGRADED):
            assert actor.get_timer() is not None
        if actor.state is S.RELAY_ONLY:
            assert actor.get_timer() is None
