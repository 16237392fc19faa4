"""Known-answer Noise vectors (cacophony, IKpsk2 BLAKE2s/BLAKE2b) for ``aura-core selftest``.

Each vector replays a full handshake with fixed ephemerals and checks every message, the
handshake hash and the transport messages (initiator/responder alternating after split()).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources

from ._noise import HandshakeState

FILE = "noise/cacophony_ikpsk2.json"


def vectors() -> list[dict]:
    return json.loads(resources.files("aura_core.vectors").joinpath(FILE).read_text())["vectors"]


def run_vector(v: dict) -> list[tuple[str, bytes, bytes]]:
    """(what, got, want) for every checked value of one vector."""
    h = bytes.fromhex
    init = HandshakeState.initiator(v["protocol_name"], h(v["init_prologue"]), h(v["init_static"]),
                                    h(v["init_remote_static"]), h(v["init_psks"][0]),
                                    e=h(v["init_ephemeral"]))
    resp = HandshakeState.responder(v["protocol_name"], h(v["resp_prologue"]), h(v["resp_static"]),
                                    h(v["resp_psks"][0]), e=h(v["resp_ephemeral"]))
    out = []
    msgs = v["messages"]
    for i, m in enumerate(msgs[:2]):
        w, r = (init, resp) if i == 0 else (resp, init)
        ct = w.write_message(h(m["payload"]))
        out.append((f"message {i}", ct, h(m["ciphertext"])))
        out.append((f"message {i} payload", r.read_message(ct), h(m["payload"])))
    out.append(("handshake hash (initiator)", init.handshake_hash, h(v["handshake_hash"])))
    out.append(("handshake hash (responder)", resp.handshake_hash, h(v["handshake_hash"])))
    i1, i2 = init.split()
    r1, r2 = resp.split()
    for i, m in enumerate(msgs[2:], start=2):
        enc, dec = (i1, r1) if i % 2 == 0 else (r2, i2)
        ct = enc.encrypt_with_ad(b"", h(m["payload"]))
        out.append((f"message {i}", ct, h(m["ciphertext"])))
        out.append((f"message {i} payload", dec.decrypt_with_ad(b"", ct), h(m["payload"])))
    return out


def check() -> Iterator[tuple[str, bool, str]]:
    for v in vectors():
        for what, got, want in run_vector(v):
            ok = got == want
            detail = "" if ok else f"got {got.hex()}, want {want.hex()}"
            yield f"{v['protocol_name']}: {what}", ok, detail
