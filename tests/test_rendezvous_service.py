"""RendezvousService end to end, two and three authorities pumped in memory (no sockets):
publish -> sync (journal merge) -> establish -> exchange -> rotate epoch -> exchange -> revoke ->
teardown, with the real guard chain, effect interpreter, flow ledger and journal."""

from __future__ import annotations

import hashlib

import pytest

from aura_core import dagcbor
from aura_core.capabilities import (
    ALL_CAPABILITIES,
    CAP_RENDEZVOUS_CONNECT,
    CAP_RENDEZVOUS_PUBLISH,
    CapabilityIssuer,
)
from aura_core.effects import EffectHandlers, run_local
from aura_core.errors import (
    AuraError,
    DecryptError,
    DescriptorError,
    HandshakeError,
    ProtocolError,
    UsageError,
)
from aura_core.flow import FlowLedger
from aura_core.guards import AppendFact, ChargeBudget, GuardSnapshot, RecordReceipt, SendEnvelope
from aura_core.hashing import ContextKey
from aura_core.ids import ContextId
from aura_core.journal import JournalStore
from aura_core.keys import IdentityKey
from aura_core.rendezvous import (
    QuicDirect,
    WebSocketRelay,
    build_descriptor,
    revoke_descriptor,
    seal_descriptor,
)
from aura_core.rendezvous.channel import AgreementMode, ChannelState
from aura_core.rendezvous.facts import (
    KIND_CHANNEL_ESTABLISHED,
    KIND_DESCRIPTOR,
    KIND_DESCRIPTOR_REVOKED,
)
from aura_core.rendezvous.service import RendezvousConfig, RendezvousService

pytestmark = pytest.mark.native  # drives the compiled Noise and DAG-CBOR cores

NOW = 1_750_000_000_000
CTX = ContextId(bytes(range(16)))
OTHER_CTX = ContextId(bytes(range(1, 17)))
KEY = ContextKey(bytes([9]) * 32)
LIMIT = 100


def det_rand(seed: bytes):
    n = [0]

    def rand(k: int) -> bytes:
        n[0] += 1
        return hashlib.blake2b(seed + n[0].to_bytes(8, "big"), digest_size=k).digest()
    return rand


class Node:
    """One authority: service + flow ledger + journal + effect interpreter."""

    def __init__(self, seed: int, ctx=CTX, key=KEY, epoch=1, caps=ALL_CAPABILITIES, config=None):
        self.identity = IdentityKey(bytes([seed]) * 32)
        self.id = self.identity.authority_id
        self.svc = RendezvousService(self.identity, config, rand=det_rand(bytes([seed])))
        self.svc.join_context(ctx, key, epoch)
        self.ctx, self.epoch, self.caps = ctx, epoch, frozenset(caps)
        self.ledger = FlowLedger()
        self.journal = JournalStore(":memory:")
        self.receipts: list[RecordReceipt] = []
        self.sent: list[SendEnvelope] = []

    def budget(self, *peers, limit=LIMIT):
        for p in (self, *peers):
            self.ledger.open(self.ctx, p.id, limit, self.epoch)

    def snap(self, now=NOW, caps=None, flow=None):
        flow = flow if flow is not None else {
            a.peer: a.limit - a.spent - a.reserved for a in self.ledger.accounts(self.ctx)}
        return GuardSnapshot(self.id, self.ctx, self.epoch, now,
                             self.caps if caps is None else frozenset(caps), flow)

    def run(self, outcome_or_effects):
        effects = getattr(outcome_or_effects, "effects", outcome_or_effects)
        res = run_local(effects, EffectHandlers(flow=self.ledger, journal=self.journal,
                                                receipts=lambda r: self.receipts.append(r) or r))
        assert res.ok, res.error
        self.sent.extend(res.sends)
        return res.sends

    def facts(self):
        return [dagcbor.decode(b) for _, b in self.journal.facts_in_range(self.ctx, b"", None, 10_000)]

    def kinds(self):
        return sorted(f["kind"] for f in self.facts())

    def rotate(self, epoch):
        self.epoch = epoch
        self.ledger.rotate(self.ctx, epoch)
        return self.svc.advance_epoch(self.ctx, epoch)


def sync(*nodes, now=NOW):
    """Anti-entropy stand-in: every journal merges every other's facts, then services ingest."""
    bodies = {}
    for n in nodes:
        for h, b in n.journal.facts_in_range(n.ctx, b"", None, 10_000):
            bodies[h] = b
    for n in nodes:
        res = n.journal.merge(n.ctx, list(bodies.values()))
        new = [bodies[h] for h in res.inserted]
        n.svc.ingest(n.ctx, new, now)


def publish(node, hints=None, now=NOW):
    out = node.svc.prepare_publish_descriptor(node.snap(now), node.ctx,
                                              hints or [QuicDirect("192.0.2.%d:4433" % node.id.uuid.bytes[0])],
                                              now)
    assert out.is_allowed()
    assert [type(e) for e in out.effects] == [ChargeBudget, AppendFact, RecordReceipt]
    node.run(out)
    return out


def establish(a, b, now=NOW):
    [init] = a.run(a.svc.prepare_establish_channel(a.snap(now), a.ctx, b.id, now))
    assert init.peer == b.id
    out = b.svc.prepare_handle_handshake(b.snap(now), b.ctx, a.id, init.envelope, now)
    assert out.is_allowed()
    [resp] = b.run(out)
    assert resp.peer == a.id
    ch_a, effects = a.svc.handle_handshake_response(a.ctx, b.id, resp.envelope, now)
    a.run(effects)
    ch_b = b.svc.channels.find_by_context_peer(b.ctx, a.id)
    assert ch_b is not None and ch_b.channel_id == ch_a.channel_id
    return ch_a, ch_b


def exchange(ca, cb, now=NOW):
    for i in range(3):
        assert cb.open(ca.seal(b"a->b %d" % i, now), now) == b"a->b %d" % i
        assert ca.open(cb.seal(b"b->a %d" % i, now), now) == b"b->a %d" % i


def test_two_authorities_full_lifecycle():
    a, b = Node(1), Node(2)
    a.budget(b), b.budget(a)
    publish(a), publish(b)
    assert a.kinds() == [KIND_DESCRIPTOR] and b.kinds() == [KIND_DESCRIPTOR]
    sync(a, b)
    assert a.kinds() == b.kinds() == [KIND_DESCRIPTOR] * 2
    assert a.svc.get_cached_descriptor(CTX, b.id).authority_id == b.id

    ca, cb = establish(a, b)
    assert ca.agreement_mode is AgreementMode.A1 and ca.reversion_risk
    exchange(ca, cb)
    # both sides appended the same ChannelEstablished fact: after sync the journals hold one
    sync(a, b)
    assert a.kinds() == b.kinds() == sorted([KIND_DESCRIPTOR] * 2 + [KIND_CHANNEL_ESTABLISHED])
    [est] = [f for f in a.facts() if f["kind"] == KIND_CHANNEL_ESTABLISHED]
    assert (est["initiator"], est["responder"], est["channel_id"], est["epoch"]) == (
        bytes(a.id), bytes(b.id), ca.channel_id, 1)
    # charges: publish 1 (own account), connect 2 (peer account) on both sides
    assert a.ledger.budget(CTX, a.id).spent == 1 and a.ledger.budget(CTX, b.id).spent == 2
    assert b.ledger.budget(CTX, b.id).spent == 1 and b.ledger.budget(CTX, a.id).spent == 2
    assert {r.operation for r in a.receipts} == {"rendezvous:publish", "rendezvous:connect"}
    # A3 after commit evidence is merged
    assert a.svc.channels.merge_commit(CTX, ca.channel_id, 1) and not ca.provisional

    # ---- rotate epoch: a real re-handshake with keys from epoch 2
    stale = ca.seal(b"late epoch-1 frame", NOW)
    assert a.rotate(2) == [b.id] and b.rotate(2) == [a.id]
    assert ca.state is ChannelState.ROTATING and ca.needs_rotation
    assert a.svc.needs_refresh(CTX, NOW)  # our descriptor commits to epoch 1
    publish(a, now=NOW + 1), publish(b, now=NOW + 1)
    sync(a, b, now=NOW + 1)
    ca2, cb2 = establish(a, b, now=NOW + 2)
    assert ca2.epoch == 2 and ca2.channel_id != ca.channel_id and ca2.agreement_mode is AgreementMode.A1
    assert ca.state is ChannelState.CLOSED and cb.state is ChannelState.CLOSED
    with pytest.raises(DecryptError):
        cb2.open(stale, NOW + 3)
    exchange(ca2, cb2, NOW + 3)

    # ---- revoke: B drops A's descriptor, no new channel can start from it
    rev = a.svc.prepare_revoke_descriptor(a.snap(NOW + 4), CTX)
    a.run(rev)
    sync(a, b, now=NOW + 4)
    assert KIND_DESCRIPTOR_REVOKED in b.kinds()
    assert b.svc.get_cached_descriptor(CTX, a.id) is None
    with pytest.raises(DescriptorError):
        b.svc.prepare_establish_channel(b.snap(NOW + 4), CTX, a.id, NOW + 4)

    # ---- teardown
    assert a.svc.teardown(CTX, b.id) is ca2 and b.svc.teardown(CTX, a.id) is cb2
    assert ca2.state is ChannelState.CLOSED and len(a.svc.channels) == len(b.svc.channels) == 0
    with pytest.raises(UsageError):
        ca2.seal(b"x", NOW + 5)


def test_three_authorities_and_relay_only_peer():
    a, b, c = Node(1), Node(2), Node(3)
    for n in (a, b, c):
        n.budget(*[m for m in (a, b, c) if m is not n])
    publish(a), publish(b)
    publish(c, hints=[WebSocketRelay(b.id)])  # C reachable through a relay only
    sync(a, b, c)
    for n in (a, b, c):
        assert n.kinds() == [KIND_DESCRIPTOR] * 3
    ab = establish(a, b)
    ac = establish(a, c)
    bc = establish(b, c)
    for x, y in (ab, ac, bc):
        exchange(x, y)
    assert len(a.svc.channels) == 2 and len(c.svc.channels) == 2
    # connecting to relay-only C costs the relay price (3) under rendezvous:relay
    assert a.ledger.budget(CTX, c.id).spent == 3 and a.ledger.budget(CTX, b.id).spent == 2
    sync(a, b, c)
    for n in (a, b, c):
        assert n.kinds().count(KIND_CHANNEL_ESTABLISHED) == 3
    # A leaves: only A's channels close
    for n in (b, c):
        n.svc.teardown(CTX, a.id)
    a.svc.leave_context(CTX)
    assert len(a.svc.channels) == 0 and len(b.svc.channels) == 1
    exchange(*bc)


def _assert_nothing_happened(node, before_kinds, outcome):
    assert not outcome.is_allowed() and outcome.effects == ()
    assert node.kinds() == before_kinds
    assert node.svc.pending_count() == 0
    text = f"{outcome!r} {outcome.decision.message}"
    for secret in ("rendezvous:", "relay:", str(LIMIT), "budget", str(node.id)):
        assert secret not in text


def test_denied_and_over_budget_produce_no_effects():
    a, b = Node(1), Node(2)
    a.budget(b), b.budget(a)
    publish(a), publish(b)
    sync(a, b)
    before = a.kinds()
    # no capability
    _assert_nothing_happened(a, before, a.svc.prepare_publish_descriptor(
        a.snap(caps=()), CTX, [QuicDirect("192.0.2.1:1")], NOW))
    assert a.svc.own_descriptor(CTX) is not None  # the earlier one, untouched
    _assert_nothing_happened(a, before, a.svc.prepare_establish_channel(
        a.snap(caps=[CAP_RENDEZVOUS_PUBLISH]), CTX, b.id, NOW))
    # over budget: headroom 1 < connect cost 2; headroom 0 for publish
    _assert_nothing_happened(a, before, a.svc.prepare_establish_channel(
        a.snap(flow={b.id: 1, a.id: 1}), CTX, b.id, NOW))
    _assert_nothing_happened(a, before, a.svc.prepare_publish_descriptor(
        a.snap(flow={}), CTX, [QuicDirect("192.0.2.1:1")], NOW))
    # responder denied / blocked: no answer, no channel
    [init] = a.run(a.svc.prepare_establish_channel(a.snap(), CTX, b.id, NOW))
    before_b = b.kinds()
    for snap in (b.snap(caps=[CAP_RENDEZVOUS_PUBLISH]), b.snap(flow={a.id: 1})):
        _assert_nothing_happened(b, before_b, b.svc.prepare_handle_handshake(
            snap, CTX, a.id, init.envelope, NOW))
        assert len(b.svc.channels) == 0
    # the ledger was never touched by the refused attempts
    assert b.ledger.budget(CTX, a.id).spent == 0


def test_snapshot_from_a_real_capability_token():
    issuer = CapabilityIssuer(bytes([42]) * 32)
    a, b = Node(1), Node(2)
    a.budget(b), b.budget(a)
    token = issuer.issue(CTX, [CAP_RENDEZVOUS_PUBLISH])
    snap = GuardSnapshot.prepare(authority=a.id, context=CTX, epoch=1, now=NOW, token=token,
                                 root_public_key=issuer.public_key, flow={a.id: 10, b.id: 10})
    assert a.svc.prepare_publish_descriptor(snap, CTX, [QuicDirect("192.0.2.1:1")], NOW).is_allowed()
    publish(b)
    sync(a, b)
    assert not a.svc.prepare_establish_channel(snap, CTX, b.id, NOW).is_allowed()
    full = issuer.issue(CTX, [CAP_RENDEZVOUS_PUBLISH, CAP_RENDEZVOUS_CONNECT])
    snap2 = GuardSnapshot.prepare(authority=a.id, context=CTX, epoch=1, now=NOW, token=full,
                                  root_public_key=issuer.public_key, flow={b.id: 10})
    assert a.svc.prepare_establish_channel(snap2, CTX, b.id, NOW).is_allowed()
    with pytest.raises(UsageError):  # a snapshot of another context is a caller bug
        a.svc.prepare_establish_channel(snap2, OTHER_CTX, b.id, NOW)


# ---- bad descriptors: rejected with a clear error, nothing cached --------------------------

def _descriptor(node, *, ctx=CTX, key=KEY, now=NOW, lifetime=3600_000, epoch=1):
    r = det_rand(b"bad" + bytes(node.id) + now.to_bytes(8, "big"))
    d = build_descriptor(node.identity, key, ctx, [QuicDirect("192.0.2.9:9")], now=now,
                         epoch=epoch, lifetime_ms=lifetime, rand=r)
    return seal_descriptor(d, node.identity, key, rand=r)


@pytest.mark.parametrize("case,match", [
    ("expired", "expired"), ("future", "not valid yet"), ("forged", "signature"),
    ("cross-context", "another context"), ("wrong-key", "decrypt"), ("oversized", "too large"),
    ("garbage", "canonical"),
])
def test_bad_descriptors_rejected_nothing_cached(case, match):
    a, b = Node(1), Node(2)
    fact = _descriptor(b)
    if case == "expired":
        fact = _descriptor(b, now=NOW - 2 * 3600_000)
    elif case == "future":
        fact = _descriptor(b, now=NOW + 3600_000)
    elif case == "forged":
        fact = dict(fact, valid_until=fact["valid_until"] + 1)
    elif case == "cross-context":
        fact = _descriptor(b, ctx=OTHER_CTX)
    elif case == "wrong-key":
        fact = _descriptor(b, key=ContextKey(bytes(32)))
    elif case == "oversized":
        fact = dagcbor.encode(fact) + bytes(5000)
    elif case == "garbage":
        fact = b"\xa1\x61"
    with pytest.raises(DescriptorError, match=match):
        a.svc.cache_descriptor(fact, CTX, NOW)
    assert a.svc.get_cached_descriptor(CTX, b.id) is None
    # and through sync the same fact is dropped and counted, not raised
    raw = fact if isinstance(fact, bytes) else dagcbor.encode(fact)
    assert a.svc.ingest(CTX, [raw], NOW)["dropped"] == 1


def test_replayed_stale_and_revoked_descriptors():
    a, b = Node(1), Node(2)
    newer = _descriptor(b, now=NOW)
    older = _descriptor(b, now=NOW - 1000)
    a.svc.cache_descriptor(newer, CTX, NOW)
    with pytest.raises(DescriptorError, match="replayed"):
        a.svc.cache_descriptor(newer, CTX, NOW)
    with pytest.raises(DescriptorError, match="older"):
        a.svc.cache_descriptor(older, CTX, NOW)
    assert a.svc.get_cached_descriptor(CTX, b.id).nonce == newer["nonce"]
    # revocation of the cached descriptor; the revoked one can never come back
    assert a.svc.apply_revocation(revoke_descriptor(b.identity, CTX, newer["nonce"]), CTX)
    assert a.svc.get_cached_descriptor(CTX, b.id) is None
    with pytest.raises(DescriptorError, match="revoked|replayed"):
        a.svc.cache_descriptor(newer, CTX, NOW)
    # a revocation forged by someone else is refused
    c = Node(3)
    forged = dict(revoke_descriptor(c.identity, CTX, newer["nonce"]), auth=bytes(b.id))
    with pytest.raises(DescriptorError):
        a.svc.apply_revocation(forged, CTX)


def test_refresh_window():
    a = Node(1)
    a.budget()
    assert a.svc.needs_refresh(CTX, NOW)  # nothing published
    publish(a)
    assert not a.svc.needs_refresh(CTX, NOW + 1000)
    assert a.svc.needs_refresh(CTX, NOW + int(0.85 * 3600_000))
    assert a.svc.needs_refresh(CTX, NOW + 3600_000)
    assert not a.svc.needs_refresh(CTX, NOW + 3600_000 - 10_000, refresh_window_ms=5000)


# ---- bad handshakes ------------------------------------------------------------------------

def _pair_with_descriptors(*extra, limit=LIMIT):
    a, b = Node(1), Node(2)
    nodes = (a, b, *extra)
    for n in nodes:
        n.budget(*[m for m in nodes if m is not n], limit=limit)
        publish(n)
    sync(*nodes)
    return nodes


def test_handshake_from_wrong_peer_or_unknown_peer():
    c = Node(3)
    a, b, c = _pair_with_descriptors(c)
    [init] = c.run(c.svc.prepare_establish_channel(c.snap(), CTX, b.id, NOW))
    # C's initiation presented as if it came from A
    with pytest.raises(HandshakeError, match="claimed initiator"):
        b.svc.prepare_handle_handshake(b.snap(), CTX, a.id, init.envelope, NOW)
    assert len(b.svc.channels) == 0 and b.kinds().count(KIND_CHANNEL_ESTABLISHED) == 0
    # an authority B has no descriptor of (not a context participant as far as B knows)
    d = Node(4)
    d.budget(b)
    d.svc.cache_descriptor([f for f in b.facts() if f["auth"] == bytes(b.id)][0], CTX, NOW)
    [init_d] = d.run(d.svc.prepare_establish_channel(d.snap(), CTX, b.id, NOW))
    # without a budget towards D, B's guards drop it before any key agreement
    assert b.svc.prepare_handle_handshake(b.snap(), CTX, d.id, init_d.envelope, NOW).effects == ()
    b.ledger.open(CTX, d.id, LIMIT, 1)
    with pytest.raises(HandshakeError, match="unknown initiator"):
        b.svc.prepare_handle_handshake(b.snap(), CTX, d.id, init_d.envelope, NOW)
    assert len(b.svc.channels) == 0


def test_handshake_from_wrong_epoch_or_context():
    a, b = _pair_with_descriptors()
    b.rotate(2)
    [init] = a.run(a.svc.prepare_establish_channel(a.snap(), CTX, b.id, NOW))
    with pytest.raises(HandshakeError):
        b.svc.prepare_handle_handshake(b.snap(), CTX, a.id, init.envelope, NOW)
    assert len(b.svc.channels) == 0
    # garbage and truncated initiations
    for bad in (b"", b"\x01\x00\x00\x00", init.envelope[:40], b"\x02" + init.envelope[1:]):
        with pytest.raises(AuraError):
            b.svc.prepare_handle_handshake(b.snap(), CTX, a.id, bad, NOW)
    assert len(b.svc.channels) == 0


def test_response_mismatch_and_timeout():
    c = Node(3)
    a, b, c = _pair_with_descriptors(c)
    [to_b] = a.run(a.svc.prepare_establish_channel(a.snap(), CTX, b.id, NOW))
    [to_c] = a.run(a.svc.prepare_establish_channel(a.snap(), CTX, c.id, NOW))
    [resp_c] = c.run(c.svc.prepare_handle_handshake(c.snap(), CTX, a.id, to_c.envelope, NOW))
    # C's answer delivered as if it were B's: refused, A's handshake with B dropped
    with pytest.raises(ProtocolError):
        a.svc.handle_handshake_response(CTX, b.id, resp_c.envelope, NOW)
    assert a.svc.channels.find_by_context_peer(CTX, b.id) is None
    with pytest.raises(ProtocolError, match="no handshake pending"):
        a.svc.handle_handshake_response(CTX, b.id, resp_c.envelope, NOW)
    # the genuine answer for C still works... unless it comes too late
    late = NOW + RendezvousConfig().handshake_timeout_ms
    with pytest.raises(HandshakeError, match="timed out"):
        a.svc.handle_handshake_response(CTX, c.id, resp_c.envelope, late)
    assert a.svc.pending_count() == 0 and len(a.svc.channels) == 0


def test_pending_handshake_limit():
    c, d = Node(3), Node(4)
    a, b, c, d = _pair_with_descriptors(c, d)
    a.svc.config = RendezvousConfig(max_pending=2)
    a.run(a.svc.prepare_establish_channel(a.snap(), CTX, b.id, NOW))
    a.run(a.svc.prepare_establish_channel(a.snap(), CTX, c.id, NOW))
    with pytest.raises(UsageError, match="pending"):
        a.svc.prepare_establish_channel(a.snap(), CTX, d.id, NOW)
    # a retry to the same peer replaces its pending handshake
    assert a.svc.prepare_establish_channel(a.snap(), CTX, b.id, NOW).is_allowed()
    assert a.svc.pending_count() == 2
    later = NOW + RendezvousConfig().handshake_timeout_ms
    assert a.svc.prepare_establish_channel(a.snap(later), CTX, d.id, later).is_allowed()
    assert a.svc.pending_count() == 1


def test_incompatible_versions_clean_rejection():
    from aura_core.rendezvous import channel as chmod
    from aura_core.rendezvous.negotiate import make_offer

    a, b = _pair_with_descriptors()
    [init] = a.run(a.svc.prepare_establish_channel(a.snap(), CTX, b.id, NOW))
    # B only speaks 2.x
    orig = chmod.make_offer
    chmod.make_offer = lambda epoch: make_offer(epoch, version="2.0.0", min_version="2.0.0")
    try:
        out = b.svc.prepare_handle_handshake(b.snap(), CTX, a.id, init.envelope, NOW)
    finally:
        chmod.make_offer = orig
    assert out.is_allowed() and not any(isinstance(e, AppendFact) for e in out.effects)
    [resp] = b.run(out)
    assert len(b.svc.channels) == 0
    from aura_core.errors import VersionError
    with pytest.raises(VersionError, match="no common version"):
        a.svc.handle_handshake_response(CTX, b.id, resp.envelope, NOW)
    assert len(a.svc.channels) == 0


def test_replayed_initiation_rejected():
    a, b = _pair_with_descriptors()
    [init] = a.run(a.svc.prepare_establish_channel(a.snap(), CTX, b.id, NOW))
    [resp] = b.run(b.svc.prepare_handle_handshake(b.snap(), CTX, a.id, init.envelope, NOW))
    ch, _ = a.svc.handle_handshake_response(CTX, b.id, resp.envelope, NOW)
    channel_b = b.svc.channels.find_by_context_peer(CTX, a.id)
    # an eavesdropper replays A's recorded message 1: B refuses, its channel is untouched
    with pytest.raises(HandshakeError, match="replayed"):
        b.svc.prepare_handle_handshake(b.snap(), CTX, a.id, init.envelope, NOW + 10)
    assert b.svc.channels.find_by_context_peer(CTX, a.id) is channel_b and channel_b.is_active
    # A's next initiation, even within the same millisecond, is newer and accepted
    ch2, _ = establish(a, b, now=NOW)
    assert ch2.channel_id != ch.channel_id


# ---- privacy and robustness ----------------------------------------------------------------

def _forbidden(*nodes):
    words = ["rendezvous:", "relay:", "budget", "headroom", str(LIMIT), str(CTX), CTX.uuid.hex]
    for n in nodes:
        words += [str(n.id), n.id.uuid.hex, bytes(n.id).hex()]
    return words


def test_errors_and_effects_reveal_no_capabilities_budgets_or_membership():
    c = Node(3)
    a, b, c = _pair_with_descriptors(c)
    messages = []
    [init] = c.run(c.svc.prepare_establish_channel(c.snap(), CTX, b.id, NOW))
    attempts = [
        lambda: b.svc.prepare_handle_handshake(b.snap(), CTX, a.id, init.envelope, NOW),
        lambda: b.svc.prepare_handle_handshake(b.snap(), CTX, a.id, b"\x01\0\0\0" + bytes(100), NOW),
        lambda: b.svc.prepare_establish_channel(b.snap(), CTX, Node(9).id, NOW),
        lambda: b.svc.cache_descriptor(b"\x00", CTX, NOW),
        lambda: b.svc.cache_descriptor(_descriptor(a, ctx=OTHER_CTX), CTX, NOW),
        lambda: b.svc.handle_handshake_response(CTX, a.id, init.envelope, NOW),
    ]
    for attempt in attempts:
        with pytest.raises(AuraError) as e:
            attempt()
        messages.append(str(e.value))
    for snap in (b.snap(caps=()), b.snap(flow={})):
        out = b.svc.prepare_establish_channel(snap, CTX, a.id, NOW)
        messages.append(f"{out!r} {out.decision.message}")
    text = "\n".join(messages)
    for word in _forbidden(a, b, c):
        assert word not in text, word
    # what goes on the wire / into the shared journal: no capability names or budgets
    ca, cb = establish(a, b)
    for eff in a.sent + b.sent:
        assert b"rendezvous:" not in eff.envelope and b"relay:" not in eff.envelope
    for _, body in a.journal.facts_in_range(CTX, b"", None, 1000):
        assert b"rendezvous:" not in body and b"relay:" not in body


def test_random_handshake_bytes_never_crash_nor_change_state():
    import random

    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    a, b = _pair_with_descriptors(limit=10_000)
    [init] = a.run(a.svc.prepare_establish_channel(a.snap(), CTX, b.id, NOW))
    good = init.envelope
    for _ in range(300):
        kind = rng.randrange(3)
        if kind == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
        elif kind == 1:
            # flip bits anywhere but the sender index (bytes 4..7): like WireGuard's, indices
            # are routing hints outside the Noise message; a wrong one only misroutes the answer
            data = bytearray(good)
            spots = [*range(4), *range(8, len(data))]
            for _ in range(rng.randint(1, 4)):
                data[rng.choice(spots)] ^= 1 << rng.randrange(8)
            if data == good:  # the flips cancelled out: the genuine initiation would be answered
                data[rng.choice(spots)] ^= 1 << rng.randrange(8)
            data = bytes(data)
        else:
            data = good[: rng.randrange(len(good))]
        with pytest.raises(AuraError):
            b.svc.prepare_handle_handshake(b.snap(), CTX, a.id, data, NOW)
        with pytest.raises(AuraError):
            a.svc.handle_handshake_response(CTX, b.id, data, NOW)
        if a.svc.pending_count() == 0:  # a bad response drops the pending handshake
            [init] = a.run(a.svc.prepare_establish_channel(a.snap(), CTX, b.id, NOW))
            good = init.envelope
    assert len(b.svc.channels) == 0 and len(a.svc.channels) == 0
    assert b.kinds().count(KIND_CHANNEL_ESTABLISHED) == 0


def test_random_descriptor_mutations_rejected():
    import random

    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    a, b = Node(1), Node(2)
    raw = dagcbor.encode(_descriptor(b))
    for _ in range(300):
        data = bytearray(raw)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        if bytes(data) == raw:
            continue
        with pytest.raises(DescriptorError):
            a.svc.cache_descriptor(bytes(data), CTX, NOW)
    assert a.svc.get_cached_descriptor(CTX, b.id) is None
    assert a.svc.cache_descriptor(raw, CTX, NOW).authority_id == b.id
