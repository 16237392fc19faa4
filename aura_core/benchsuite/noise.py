"""Noise IKpsk2 benchmarks: handshakes and transport seal/open against ``noiseprotocol`` (pure
Python over OpenSSL via ``cryptography``), with C-loop limits from ``aura_core._noise``.

- full handshake, both sides in one process (create states, 2 messages, split);
  limit: the raw primitives one handshake needs (2 X25519 keygens + 8 X25519 + the BLAKE2s
  hashing and AEAD calls) in one C loop;
- responder side only (read message 1, write message 2, split);
- transport: seal+open at 64 B, 1 KiB, 1400 B, 16 KiB, single-frame calls and batches of 64,
  against raw libsodium and raw OpenSSL ChaCha20-Poly1305 seal+open loops in C (one operation
  = one frame sealed and opened); plus single-frame seal alone at 64 B.
"""

from __future__ import annotations

import nacl.bindings as nb

from . import Group, skip

PROTO = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
SIZES = [(64, "64 B"), (1024, "1 KiB"), (1400, "1400 B"), (16384, "16 KiB")]
BATCH = 64
HS_BATCH = 20


def _keys():
    si, sr, psk = (bytes([n]) * 32 for n in (1, 2, 3))
    return si, sr, nb.crypto_scalarmult_base(sr), psk


def _np_conn(initiator: bool, s: bytes, rs: bytes | None, psk: bytes):
    from noise.connection import Keypair, NoiseConnection

    c = NoiseConnection.from_name(PROTO.encode())
    (c.set_as_initiator if initiator else c.set_as_responder)()
    c.set_keypair_from_private_bytes(Keypair.STATIC, s)
    if rs is not None:
        c.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, rs)
    c.set_psks(psk)
    c.set_prologue(b"bench")
    c.start_handshake()
    return c


def _np_pair():
    si, sr, pr, psk = _keys()
    a, b = _np_conn(True, si, pr, psk), _np_conn(False, sr, None, psk)
    b.read_message(a.write_message(b""))
    a.read_message(b.write_message(b""))
    return a, b


def _ours_pair():
    from aura_core.noise import DatagramSession, HandshakeState

    si, sr, pr, psk = _keys()
    i = HandshakeState.initiator(PROTO, b"bench", si, pr, psk)
    r = HandshakeState.responder(PROTO, b"bench", sr, psk)
    r.read_message(i.write_message(b""))
    i.read_message(r.write_message(b""))
    return DatagramSession.from_handshake(i, 1, 2), DatagramSession.from_handshake(r, 2, 1)


def _handshake_groups() -> list[Group]:
    full = Group("noise", "full IKpsk2 handshake (both sides)", "handshakes",
                 goals={"noiseprotocol": 1.8, "C loop of raw primitives": 0.9})

    def ours_full():
        from aura_core.noise import HandshakeState

        si, sr, pr, psk = _keys()
        init, resp = HandshakeState.initiator, HandshakeState.responder

        def run() -> int:
            for _ in range(HS_BATCH):
                i = init(PROTO, b"bench", si, pr, psk)
                r = resp(PROTO, b"bench", sr, psk)
                r.read_message(i.write_message(b""))
                i.read_message(r.write_message(b""))
                i.split()
                r.split()
            return HS_BATCH
        return run

    def peer_full():
        _np_pair()
        si, sr, pr, psk = _keys()

        def run() -> int:
            for _ in range(HS_BATCH):
                a, b = _np_conn(True, si, pr, psk), _np_conn(False, sr, None, psk)
                b.read_message(a.write_message(b""))
                a.read_message(b.write_message(b""))
            return HS_BATCH
        return run

    def limit_full():
        from aura_core import _noise

        return lambda: _noise._bench_raw_handshake_primitives(HS_BATCH)

    full.add("aura_core", "ours", ours_full)
    full.add("noiseprotocol", "peer", peer_full)
    full.add("C loop of raw primitives", "limit", limit_full)

    resp = Group("noise", "responder side (read msg 1, write msg 2)", "handshakes")

    def ours_resp():
        from aura_core.noise import HandshakeState

        si, sr, pr, psk = _keys()
        m1 = HandshakeState.initiator(PROTO, b"bench", si, pr, psk).write_message(b"")
        responder = HandshakeState.responder

        def run() -> int:
            for _ in range(HS_BATCH):
                r = responder(PROTO, b"bench", sr, psk)
                r.read_message(m1)
                r.write_message(b"")
                r.split()
            return HS_BATCH
        return run

    def peer_resp():
        si, sr, pr, psk = _keys()
        m1 = _np_conn(True, si, pr, psk).write_message(b"")

        def run() -> int:
            for _ in range(HS_BATCH):
                b = _np_conn(False, sr, None, psk)
                b.read_message(m1)
                b.write_message(b"")
            return HS_BATCH
        return run

    resp.add("aura_core", "ours", ours_resp)
    resp.add("noiseprotocol", "peer", peer_resp)
    return [full, resp]


def _limits(group: Group, size: int, count: int) -> None:
    from aura_core import _noise

    group.add("raw libsodium ChaCha20-Poly1305 (C)", "limit",
              lambda: (lambda: _noise._bench_raw_aead(count, size, "sodium")))

    def openssl():
        if not _noise.openssl_available():
            raise skip("OpenSSL libcrypto not loadable")
        return lambda: _noise._bench_raw_aead(count, size, "openssl")
    group.add("raw OpenSSL ChaCha20-Poly1305 (C)", "limit", openssl)


def _transport_groups() -> list[Group]:
    out: list[Group] = []
    for size, label in SIZES:
        payload = bytes(size)
        single = Group("noise", f"seal+open {label}, single frame", "frames")

        def ours_single(payload=payload):
            a, b = _ours_pair()
            seal, open_ = a.seal, b.open

            def run() -> int:
                for _ in range(BATCH):
                    open_(seal(payload))
                return BATCH
            return run

        def peer_single(payload=payload):
            a, b = _np_pair()

            def run() -> int:
                for _ in range(BATCH):
                    b.decrypt(a.encrypt(payload))
                return BATCH
            return run

        single.add("aura_core", "ours", ours_single)
        single.add("noiseprotocol", "peer", peer_single)
        _limits(single, size, BATCH)
        out.append(single)

        batch = Group("noise", f"seal+open {label}, batch of {BATCH}", "frames",
                      goals={"raw libsodium ChaCha20-Poly1305 (C)": 0.85,
                             "raw OpenSSL ChaCha20-Poly1305 (C)": 0.85} if size == 1024 else {})

        def ours_batch(payload=payload):
            a, b = _ours_pair()
            payloads = [payload] * BATCH

            def run() -> int:
                buf, offs = a.seal_batch(payloads)
                b.open_batch_packed(buf, offs)
                return BATCH
            return run

        batch.add("aura_core", "ours", ours_batch)
        batch.add("noiseprotocol", "peer", peer_single)
        _limits(batch, size, BATCH)
        out.append(batch)

    seal64 = Group("noise", "seal 64 B, single frame", "frames", goals={"noiseprotocol": 2.0})

    def ours_seal():
        a, _ = _ours_pair()
        seal, p = a.seal, bytes(64)

        def run() -> int:
            for _ in range(BATCH):
                seal(p)
            return BATCH
        return run

    def peer_seal():
        a, _ = _np_pair()
        p = bytes(64)

        def run() -> int:
            for _ in range(BATCH):
                a.encrypt(p)
            return BATCH
        return run

    seal64.add("aura_core", "ours", ours_seal)
    seal64.add("noiseprotocol", "peer", peer_seal)
    out.append(seal64)
    return out


def groups() -> list[Group]:
    return _handshake_groups() + _transport_groups()


def interleaved(rounds: int = 15, selected: list[str] | None = None) -> list[dict[str, object]]:
    """Best-of-``rounds`` rates with the contenders of each group run in turn, round after round.

    On a shared, loaded machine the sequential runner's samples of two contenders can land in
    different load phases; interleaving them and keeping each one's best batch compares them
    under the same conditions.  Same groups, same goals as ``aura-core bench noise``.
    """
    import time

    from ._runner import Measurement, ratios

    gs = [g for g in groups() if not selected or any(s in g.key for s in selected)]
    results: list[Measurement] = []
    for g in gs:
        runs = [c for c in g.contenders if hasattr(c, "run")]
        best = {c.name: 0.0 for c in runs}
        for _ in range(rounds):
            for c in runs:
                t0 = time.perf_counter()
                n = c.run()  # type: ignore[union-attr]
                dt = time.perf_counter() - t0
                best[c.name] = max(best[c.name], n / dt if dt > 0 else 0.0)
        for c in g.contenders:
            rate = best.get(c.name)
            results.append(Measurement(g.key, c.name, c.role, rate, g.unit, rounds,
                                       getattr(c, "reason", "")))
    return ratios(gs, results)


if __name__ == "__main__":  # python -m aura_core.benchsuite.noise [FILTER...]
    import sys

    from ._runner import format_table

    print(format_table(interleaved(selected=sys.argv[1:] or None)))
