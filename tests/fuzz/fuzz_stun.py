"""atheris target for the STUN parser and integrity/fingerprint checks (aura_core.stun).

Contract: ``parse_message`` returns a message or raises StunError; on a parsed message the
accessors and checks return values or raise StunError — nothing else escapes, and the client
never raises on a datagram.  ``run_corpus(items)`` drives the same checks from pytest.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from aura_core.errors import StunError
from aura_core.stun import (StunClient, build_binding_response, check_fingerprint,
                            check_integrity, parse_message)


def seeds() -> list[bytes]:
    return [b"", bytes(20), build_binding_response(bytes(12), ("192.0.2.1", 1)),
            build_binding_response(bytes(12), ("2001:db8::1", 2), fingerprint=False)]


def one_input(data: bytes, client: StunClient | None = None) -> None:
    try:
        m = parse_message(data)
    except StunError:
        pass
    else:
        for f in (lambda: m.mapped_address, lambda: m.error, lambda: m.software,
                  lambda: check_fingerprint(m), lambda: check_integrity(m, b"key"),
                  m.unknown_required, lambda: (m.method, m.msg_class)):
            try:
                f()
            except StunError:
                pass
    if client is not None:
        client.receive_datagram(data, ("192.0.2.1", 3478), 0.0)


def run_corpus(items: Iterable[bytes]) -> int:
    client = StunClient(rand=lambda n: bytes(n))
    client.start(("192.0.2.1", 3478), 0.0)
    n = 0
    for data in items:
        one_input(data, client)
        n += 1
    return n


def main() -> None:  # pragma: no cover - needs atheris
    import atheris

    atheris.instrument_all()  # the parser is Python: its bytecode edges guide libFuzzer
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":  # pragma: no cover
    main()
