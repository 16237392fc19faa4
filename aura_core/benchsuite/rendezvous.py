"""Rendezvous benchmarks: descriptors sealed/opened per second, channel establishments per second.

Limits measured in the same run: the raw PyNaCl calls a descriptor needs (Ed25519 sign or
verify + XChaCha20-Poly1305), and the raw Noise IKpsk2 handshake (both sides, compiled core) for
establishment, whose goal is ours >= 0.8x raw (the orchestration costs at most 20 %).
"""

from __future__ import annotations

import hashlib

from . import Group

N_DESC = 200
N_HS = 50
NOW = 1_750_000_000_000


def _rand():
    counter = [0]

    def rand(n: int) -> bytes:
        counter[0] += 1
        return hashlib.blake2b(counter[0].to_bytes(8, "big"), digest_size=n).digest()
    return rand


def groups() -> list[Group]:
    from nacl import bindings as nb

    from aura_core import dagcbor
    from aura_core.hashing import ContextKey
    from aura_core.ids import ContextId
    from aura_core.keys import IdentityKey
    from aura_core.noise import PROTOCOL_BLAKE2S, HandshakeState
    from aura_core.noise.binding import aura_prologue
    from aura_core.rendezvous import (
        QuicDirect,
        QuicReflexive,
        WebSocketRelay,
        build_descriptor,
        open_descriptor,
        seal_descriptor,
    )

    alice, bob = IdentityKey(bytes([1]) * 32), IdentityKey(bytes([2]) * 32)
    ctx, key = ContextId(bytes(range(16))), ContextKey(bytes([7]) * 32)
    hints = (QuicDirect("203.0.113.7:4433"), QuicReflexive("198.51.100.9:61000"),
             WebSocketRelay(bob.authority_id))
    rand = _rand()
    fact = seal_descriptor(build_descriptor(alice, key, ctx, hints, now=NOW, rand=rand), alice,
                           key, rand=rand)
    raw = dagcbor.encode(fact)
    plain_len = len(fact["ct"]) - 16
    dkey = key.descriptor_key(bytes(ctx))

    seal = Group("rendezvous", "descriptor build+sign+encrypt", "descriptors")

    def ours_seal():
        def run() -> int:
            for _ in range(N_DESC):
                d = build_descriptor(alice, key, ctx, hints, now=NOW, rand=rand)
                seal_descriptor(d, alice, key, rand=rand)
            return N_DESC
        return run

    def raw_seal():
        sk, msg, pt, n24 = alice.ed25519_secret(), bytes(len(raw) - 64), bytes(plain_len), bytes(24)

        def run() -> int:
            for _ in range(N_DESC):
                nb.crypto_aead_xchacha20poly1305_ietf_encrypt(pt, b"", n24, dkey)
                nb.crypto_sign(msg, sk)
            return N_DESC
        return run

    seal.add("aura seal_descriptor", "ours", ours_seal)
    seal.add("pynacl sign+xchacha (raw)", "limit", raw_seal)

    opn = Group("rendezvous", "descriptor validate+decrypt", "descriptors")

    def ours_open():
        def run() -> int:
            for _ in range(N_DESC):
                open_descriptor(raw, key, ctx, now=NOW + 1)
            return N_DESC
        return run

    def raw_open():
        pk = alice.public.ed25519
        msg = bytes(len(raw) - 64)
        signed = nb.crypto_sign(msg, alice.ed25519_secret())
        n24 = bytes(24)
        ct = nb.crypto_aead_xchacha20poly1305_ietf_encrypt(bytes(plain_len), b"", n24, dkey)

        def run() -> int:
            for _ in range(N_DESC):
                nb.crypto_sign_open(signed, pk)
                nb.crypto_aead_xchacha20poly1305_ietf_decrypt(ct, b"", n24, dkey)
            return N_DESC
        return run

    opn.add("aura open_descriptor", "ours", ours_open)
    opn.add("pynacl verify+xchacha (raw)", "limit", raw_open)

    est = Group("rendezvous", "channel establishment (in memory)", "channels",
                goals={"raw Noise IKpsk2 handshake": 0.8})

    def ours_establish():
        from aura_core.rendezvous.service import bench_establish_pair
        return bench_establish_pair(alice, bob, ctx, key, N_HS)

    def raw_noise():
        psk = key.handshake_psk(bytes(ctx), 1, bytes(alice.authority_id), bytes(bob.authority_id))
        pro = aura_prologue(bytes(ctx), 1)
        s_a, s_b, rs_b = alice.x25519_secret(), bob.x25519_secret(), bob.public.x25519

        def run() -> int:
            for _ in range(N_HS):
                i = HandshakeState.initiator(PROTOCOL_BLAKE2S, pro, s_a, rs_b, psk)
                r = HandshakeState.responder(PROTOCOL_BLAKE2S, pro, s_b, psk)
                r.read_message(i.write_message(b""))
                i.read_message(r.write_message(b""))
                i.split()
                r.split()
            return N_HS
        return run

    def binding():
        # The Noise engineer's Aura binding alone (prologue, PSK, offers, resolve, transport
        # sessions): shows which layer the establishment time goes to.
        # Each side keeps its HandshakeKeys (static secret, prologue, PSK) as the service does.
        from aura_core.noise.channel import HandshakeKeys
        from aura_core.rendezvous.negotiate import make_offer

        offer, resolve = make_offer(1), {alice.public.x25519: alice.public}.get
        ka, kb = HandshakeKeys(alice, key, bytes(ctx)), HandshakeKeys(bob, key, bytes(ctx))

        def run() -> int:
            for _ in range(N_HS):
                i = ka.initiator(bob.public, 1, offer)
                r = kb.responder(1, offer, resolve)
                r.read_message(i.write_message())
                i.read_message(r.write_message())
                i.stream_session()
                r.stream_session()
            return N_HS
        return run

    est.add("aura RendezvousService establish", "ours", ours_establish)
    est.add("raw Noise IKpsk2 handshake", "limit", raw_noise)
    est.add("Noise binding (AuraHandshake) only", "limit", binding)
    return [seal, opn, est]
