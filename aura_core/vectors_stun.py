"""RFC 5769 STUN test vectors (``aura_core/vectors/stun/rfc5769.json``) for ``aura-core selftest``.

Each vector is parsed with :mod:`aura_core.stun`; MESSAGE-INTEGRITY is recomputed under the
vector's short-term or long-term key, FINGERPRINT recomputed, and the decoded fields compared.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

from .stun import Attr, check_fingerprint, check_integrity, long_term_key, parse_message, short_term_key

FILE = "stun/rfc5769.json"


def load() -> dict[str, Any]:
    text = resources.files("aura_core.vectors").joinpath(FILE).read_text(encoding="utf-8")
    return json.loads(text)["vectors"]


def _check_one(v: dict[str, Any]) -> list[str]:
    problems = []
    msg = parse_message(bytes.fromhex(v["hex"]))
    cred = v["credentials"]
    if cred["mechanism"] == "short-term":
        key = short_term_key(cred["password"])
    else:
        key = long_term_key(cred["username"], cred["realm"], cred["password"])
    exp = v["expect"]
    if check_integrity(msg, key) is not exp["message_integrity_ok"]:
        problems.append("MESSAGE-INTEGRITY")
    if "fingerprint_ok" in exp and check_fingerprint(msg) is not exp["fingerprint_ok"]:
        problems.append("FINGERPRINT")
    if "software" in exp and msg.software != exp["software"]:
        problems.append("SOFTWARE")
    for name, attr in (("username", Attr.USERNAME), ("realm", Attr.REALM), ("nonce", Attr.NONCE)):
        if name in exp:
            raw = msg.get(attr)
            if raw is None or raw.decode("utf-8") != exp[name]:
                problems.append(name.upper())
    if "mapped_address" in exp:
        mapped = msg.mapped_address
        if mapped is None or f"{mapped[0]} port {mapped[1]}" != exp["mapped_address"]:
            problems.append("XOR-MAPPED-ADDRESS")
    return problems


def check() -> Iterator[tuple[str, bool, str]]:
    for name, v in load().items():
        try:
            problems = _check_one(v)
        except Exception as exc:  # a vector that does not even parse is one failed case
            problems = [f"{type(exc).__name__}: {exc}"]
        yield f"RFC 5769 §{v['rfc_section']} {name}", not problems, ", ".join(problems)
