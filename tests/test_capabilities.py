"""Biscuit capability tokens: issue, attenuate, expiry at an injected time, context scope."""

from __future__ import annotations

import pytest

from aura_core.capabilities import (
    ALL_CAPABILITIES,
    CAP_RELAY_FORWARD,
    CAP_RENDEZVOUS_CONNECT,
    CAP_RENDEZVOUS_PUBLISH,
    CAP_RENDEZVOUS_RELAY,
    CapabilityIssuer,
    attenuate,
    verify_capabilities,
)
from aura_core.errors import AuthorizationError, InvalidValue
from aura_core.ids import ContextId

ISSUER = CapabilityIssuer(bytes(range(32)))
ROOT = ISSUER.public_key
CTX = ContextId(bytes(range(16)))
OTHER = ContextId(bytes(16))
T0 = 1_700_000_000_000  # ms


def test_names_from_the_seeds():
    assert ALL_CAPABILITIES == {"rendezvous:publish", "rendezvous:connect", "rendezvous:relay",
                                "relay:forward"}


def test_grant_expiry_and_context_scope():
    tok = ISSUER.issue(CTX, [CAP_RENDEZVOUS_PUBLISH, CAP_RENDEZVOUS_CONNECT], expires_at=T0 + 60_000)
    assert verify_capabilities(tok, ROOT, CTX, T0) == {CAP_RENDEZVOUS_PUBLISH, CAP_RENDEZVOUS_CONNECT}
    assert verify_capabilities(tok, ROOT, CTX, T0 + 60_000) == {CAP_RENDEZVOUS_PUBLISH, CAP_RENDEZVOUS_CONNECT}
    assert verify_capabilities(tok, ROOT, CTX, T0 + 60_001) == frozenset()
    assert verify_capabilities(tok, ROOT, OTHER, T0) == frozenset()
    forever = ISSUER.issue(CTX, ALL_CAPABILITIES)
    assert verify_capabilities(forever, ROOT, CTX, T0 * 100) == ALL_CAPABILITIES


def test_attenuation_only_narrows():
    tok = ISSUER.issue(CTX, ALL_CAPABILITIES, expires_at=T0 + 60_000)
    narrow = attenuate(tok, ROOT, capabilities=[CAP_RELAY_FORWARD], expires_at=T0 + 1000)
    assert verify_capabilities(narrow, ROOT, CTX, T0) == {CAP_RELAY_FORWARD}
    assert verify_capabilities(narrow, ROOT, CTX, T0 + 1001) == frozenset()
    # attenuating cannot widen: asking for more than the token had yields the intersection
    small = ISSUER.issue(CTX, [CAP_RENDEZVOUS_RELAY])
    wider = attenuate(small, ROOT, capabilities=ALL_CAPABILITIES)
    assert verify_capabilities(wider, ROOT, CTX, T0) == {CAP_RENDEZVOUS_RELAY}
    # a later expiry in the attenuation block does not extend the original one
    later = attenuate(tok, ROOT, expires_at=T0 + 10**9)
    assert verify_capabilities(later, ROOT, CTX, T0 + 60_001) == frozenset()


def test_forged_or_foreign_tokens_fail_generically():
    tok = ISSUER.issue(CTX, ALL_CAPABILITIES)
    other = CapabilityIssuer(bytes(32))
    for bad, root in [(tok, other.public_key), (tok[:-1] + bytes([tok[-1] ^ 1]), ROOT),
                      (b"", ROOT), (b"\x00" * 64, ROOT)]:
        with pytest.raises(AuthorizationError) as ei:
            verify_capabilities(bad, root, CTX, T0)
        assert str(ei.value) == "authorization failed"
    with pytest.raises(AuthorizationError):
        attenuate(tok, other.public_key, capabilities=[CAP_RELAY_FORWARD])


def test_bad_arguments():
    with pytest.raises(InvalidValue):
        CapabilityIssuer(b"short")
    with pytest.raises(InvalidValue):
        ISSUER.issue(b"short", ALL_CAPABILITIES)
    with pytest.raises(InvalidValue):
        ISSUER.issue(CTX, ['x"; right("a", "b")'])
