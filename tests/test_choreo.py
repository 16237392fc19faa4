"""Choreographies: projection to local types and run-time enforcement (aura_core.choreo)."""

from __future__ import annotations

import itertools
import random

import pytest

from aura_core.choreo import (
    E_FINISHED,
    E_UNEXPECTED,
    PROTOCOLS,
    RELAYED_RENDEZVOUS,
    RENDEZVOUS_EXCHANGE,
    Choreography,
    Interaction,
    LeakAnnotation,
)
from aura_core.errors import InvalidValue, ProtocolError


def test_projection_of_rendezvous_exchange():
    ini = RENDEZVOUS_EXCHANGE.project("Initiator")
    res = RENDEZVOUS_EXCHANGE.project("Responder")
    assert str(ini) == ("Send(Responder, DescriptorOffer).Recv(Responder, DescriptorAnswer)."
                        "Send(Responder, HandshakeInit).Recv(Responder, HandshakeComplete).End")
    assert str(res) == ("Recv(Initiator, DescriptorOffer).Send(Initiator, DescriptorAnswer)."
                        "Recv(Initiator, HandshakeInit).Send(Initiator, HandshakeComplete).End")


def test_projection_of_relayed_rendezvous_skips_uninvolved_roles():
    assert str(RELAYED_RENDEZVOUS.project("Initiator")) == (
        "Send(Relay, RelayRequest).Recv(Relay, RelayComplete).End")
    assert str(RELAYED_RENDEZVOUS.project("Responder")) == (
        "Recv(Relay, RelayForward).Send(Relay, RelayResponse).End")
    assert len(RELAYED_RENDEZVOUS.project("Relay").actions) == 4


def test_projections_are_dual():
    # Every global step appears exactly once as a send and once as the matching receive.
    for chor in PROTOCOLS.values():
        sends, recvs = [], []
        for role in chor.roles:
            for a in chor.project(role).actions:
                (sends if a.kind == "send" else recvs).append((role, a.peer, a.label) if a.kind == "send"
                                                              else (a.peer, role, a.label))
        assert sorted(sends) == sorted(recvs) == sorted((s.sender, s.receiver, s.label) for s in chor.steps)


def test_annotations_come_from_the_seed():
    offer = RENDEZVOUS_EXCHANGE.steps[0]
    assert offer.guard_capability == "rendezvous:publish" and offer.journal_facts == ("descriptor_offered",)
    assert RENDEZVOUS_EXCHANGE.steps[3].journal_facts == ("channel_established",)
    fwd = RELAYED_RENDEZVOUS.steps[1]
    assert fwd.guard_capability == "relay:forward" and fwd.leak == (LeakAnnotation("neighbor", 1),)
    assert RELAYED_RENDEZVOUS.capabilities("Relay") == {"relay:forward"}
    assert RENDEZVOUS_EXCHANGE.capabilities("Initiator") == {"rendezvous:publish", "rendezvous:connect"}
    assert [s.flow_cost for s in RENDEZVOUS_EXCHANGE.steps] == [1, 1, 2, 2]


def _run_in_order(chor: Choreography) -> None:
    mons = {r: chor.monitor(r) for r in chor.roles}
    for step in chor.steps:
        assert mons[step.sender].on_send(step.receiver, step.label) is step
        assert mons[step.receiver].on_receive(step.sender, step.label) is step
    assert all(m.done for m in mons.values())


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_in_order_run_completes(name):
    _run_in_order(PROTOCOLS[name])


def test_out_of_order_send_is_rejected_and_state_kept():
    m = RENDEZVOUS_EXCHANGE.monitor("Initiator")
    with pytest.raises(ProtocolError) as e:
        m.on_send("Responder", "HandshakeInit")
    assert e.value.code == E_UNEXPECTED and "expected Send(Responder, DescriptorOffer)" in str(e.value)
    assert m.position == 0
    m.on_send("Responder", "DescriptorOffer")
    with pytest.raises(ProtocolError):  # right label, wrong direction
        m.on_send("Responder", "DescriptorAnswer")
    with pytest.raises(ProtocolError):  # wrong peer
        m.on_receive("Relay", "DescriptorAnswer")
    m.on_receive("Responder", "DescriptorAnswer")
    assert m.position == 2


def test_action_after_end_is_rejected():
    m = RELAYED_RENDEZVOUS.monitor("Initiator")
    m.on_send("Relay", "RelayRequest")
    m.on_receive("Relay", "RelayComplete")
    assert m.done and m.expected() is None
    with pytest.raises(ProtocolError) as e:
        m.on_receive("Relay", "RelayComplete")
    assert e.value.code == E_FINISHED


def test_random_traces_accepted_iff_they_are_the_projection():
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    for chor in PROTOCOLS.values():
        universe = [(k, p, s.label) for s in chor.steps for k in ("send", "recv")
                    for p in chor.roles]
        for role in chor.roles:
            want = [(a.kind, a.peer, a.label) for a in chor.project(role).actions]
            for _ in range(200):
                trace = [rng.choice(universe) for _ in range(rng.randint(0, len(want) + 1))]
                if rng.random() < 0.3:
                    trace = want[: rng.randint(0, len(want))]
                m = chor.monitor(role)
                ok = True
                for kind, peer, label in trace:
                    try:
                        (m.on_send if kind == "send" else m.on_receive)(peer, label)
                    except ProtocolError:
                        ok = False
                        break
                assert ok == (trace == want[: len(trace)])


def test_ill_formed_choreographies_are_refused():
    with pytest.raises(InvalidValue):
        Choreography("X", "x", ("A",), ())
    with pytest.raises(InvalidValue):
        Choreography("X", "x", ("A", "B"), (Interaction("A", "C", "m"),))
    with pytest.raises(InvalidValue):
        Choreography("X", "x", ("A", "B"), (Interaction("A", "A", "m"),))
    # C's send cannot be ordered after A -> B by any local observation: not realizable.
    with pytest.raises(InvalidValue):
        Choreography("X", "x", ("A", "B", "C", "D"),
                     (Interaction("A", "B", "m"), Interaction("C", "D", "n")))
    with pytest.raises(InvalidValue):
        RENDEZVOUS_EXCHANGE.project("Relay")


def test_leak_annotation_parse():
    assert LeakAnnotation.parse("neighbor:1") == LeakAnnotation("neighbor", 1)
    for bad in ("neighbor", "friend:1", "external:-1", "in_group:x"):
        with pytest.raises(InvalidValue):
            LeakAnnotation.parse(bad)


def test_every_pair_of_roles_can_run_concurrently_with_interleaving():
    # Monitors are per role: interleaving the two roles' checks differently never matters.
    chor = RENDEZVOUS_EXCHANGE
    for order in itertools.permutations(range(2)):
        mons = {r: chor.monitor(r) for r in chor.roles}
        for step in chor.steps:
            acts = [lambda: mons[step.sender].on_send(step.receiver, step.label),
                    lambda: mons[step.receiver].on_receive(step.sender, step.label)]
            for i in order:
                acts[i]()
        assert all(m.done for m in mons.values())


def test_service_constants_come_from_the_choreographies_and_capabilities():
    from aura_core import capabilities, flow
    from aura_core.rendezvous import service

    assert service.CAP_RENDEZVOUS_PUBLISH == capabilities.CAP_RENDEZVOUS_PUBLISH
    assert service.CAP_RENDEZVOUS_CONNECT == capabilities.CAP_RENDEZVOUS_CONNECT
    assert service.CAP_RENDEZVOUS_RELAY == capabilities.CAP_RENDEZVOUS_RELAY
    assert RELAYED_RENDEZVOUS.steps[1].guard_capability == capabilities.CAP_RELAY_FORWARD
    assert (service.DESCRIPTOR_PUBLISH_COST, service.CONNECT_DIRECT_COST,
            service.CONNECT_RELAY_COST) == (flow.COST_PUBLISH, flow.COST_CONNECT_DIRECT,
                                            flow.COST_CONNECT_RELAY)
    assert RELAYED_RENDEZVOUS.steps[1].flow_cost == flow.COST_RELAY_FORWARD
