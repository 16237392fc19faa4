"""atheris target for the compiled punch parser/validator (csrc/punch via aura_core._punch).

Contract: any datagram is either accepted as a valid punch (only if built with the key) or gets a
verdict; nothing raises, nothing crashes, and an engine's counters add up.
``python tests/fuzz/fuzz_punch.py`` fuzzes; ``run_corpus(items)`` drives the same checks from pytest.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from aura_core import _punch

KEY = bytes(range(32))
ME = bytes(range(16, 32))
PEER = bytes(range(32, 48))
VERDICTS = set(_punch.VERDICTS)
BATCHED = 9  # one 8-lane compression plus a single-lane remainder


def seeds() -> list[bytes]:
    good = _punch.build(KEY, PEER, ME, 7)
    ack = _punch.build(KEY, PEER, ME, 8, 1)
    return [b"", b"\x00", good, ack, good[:-1], good + b"\x00", good[:20],
            b"\x40" + good[1:], bytes(76), _punch.build(KEY, ME, PEER, 1)]


def one_input(data: bytes, engine: _punch.Engine | None = None) -> None:
    verdict, fields = _punch.parse(data)
    assert verdict in VERDICTS and (fields is None) == (verdict != "ok")
    verdict2, fields2 = _punch.check(data, KEY, ME)
    assert verdict2 in VERDICTS
    if verdict2 == "ok":
        # accepted only if the tag really is ours: rebuilding gives the same bytes
        sender, receiver, seq, flags = fields2
        assert receiver == ME and _punch.build(KEY, sender, receiver, seq, flags) == bytes(data)
    if engine is not None:
        v3, _ = engine.accept(data)
        assert v3 in VERDICTS
        v4, fields4, ack = engine.accept_and_ack(data)
        assert v4 in VERDICTS and (ack is None or (fields4 is not None and not fields4[2] & 1))
        if ack is not None:  # an ack is a valid punch back to the sender
            assert _punch.parse(ack)[0] == "ok"
        if data:
            # the batched receive path (vector tags, 8 + 1 lanes) agrees with the stateless check
            valid = verdict2 == "ok" and fields2[0] == PEER
            assert engine._bench_accept(data, BATCHED) == (BATCHED if valid else 0)


def run_corpus(items: Iterable[bytes]) -> int:
    engine = _punch.Engine(ME, KEY, [(PEER, KEY)])
    n = nonempty = 0
    for data in items:
        one_input(data, engine)
        n += 1
        nonempty += bool(data)
    stats = engine.stats()
    # accept + accept_and_ack + the batched validations
    assert sum(stats[v] for v in _punch.VERDICTS) == 2 * n + BATCHED * nonempty
    return n


def main() -> None:  # pragma: no cover - needs atheris
    import atheris

    engine = _punch.Engine(ME, KEY, [(PEER, KEY)])
    atheris.Setup(sys.argv, lambda data: one_input(data, engine))
    atheris.Fuzz()


if __name__ == "__main__":  # pragma: no cover
    main()
