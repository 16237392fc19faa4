"""atheris target for the compiled sync moments (csrc/reconcile via aura_core._reconcile).

Input: six parameter bytes (i, j, m, k, b, step), then a buffer taken as packed 32-byte hashes
(any length: a ragged tail must be refused).  Contract for any input: ``power_sums``,
``prefix_moments``, ``cells`` and ``lower_bound`` (bound: the first hash, reversed) either return exactly what the pure-Python reference
(tests/reference/reconcile_ref.py) computes, or raise ValueError, and they raise ValueError
exactly when an argument is out of range (positions outside the buffer, i > j, m outside
1..MAX_POWERS, b outside 1..MAX_FANOUT_BITS or k + b > 128, step < 1, a ragged buffer).
``python tests/fuzz/fuzz_reconcile.py`` fuzzes; ``run_corpus(items)`` drives the same checks
from pytest.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from aura_core import _reconcile
from tests.reference import reconcile_ref as ref

MAX_HASHES = 96  # keep each input cheap for the reference


def _expect(ok: bool, call, want) -> None:
    try:
        got = call()
    except ValueError:
        assert not ok, "valid arguments refused"
        return
    assert ok, "invalid arguments accepted"
    assert got == want(), "differs from the reference"


def check_one(data: bytes) -> None:
    if len(data) < 6:
        return
    i, j, m, k, b, step = data[:6]
    buf = data[6:6 + 32 * MAX_HASHES + 31]
    whole = len(buf) % 32 == 0
    n = len(buf) // 32
    i, j = i % (n + 3), j % (n + 3)  # mostly inside, sometimes just past the end
    m = m % 70
    b = b % 18
    k = k if k < 160 else k - 160
    step = step % 70
    run_ok = whole and 0 <= i <= j <= n
    _expect(run_ok and 1 <= m <= _reconcile.MAX_POWERS,
            lambda: _reconcile.power_sums(buf, i, j, m), lambda: ref.power_sums(buf, i, j, m))
    _expect(whole and step >= 1,
            lambda: _reconcile.prefix_moments(buf, step), lambda: ref.prefix_moments(buf, step))
    _expect(run_ok and 1 <= b <= _reconcile.MAX_FANOUT_BITS and k + b <= 128,
            lambda: _reconcile.cells(buf, i, j, k, b), lambda: ref.cells(buf, i, j, k, b))
    bound = buf[:32][::-1]
    _expect(run_ok and len(bound) == 32, lambda: _reconcile.lower_bound(buf, bound, i, j),
            lambda: ref.lower_bound(buf, bound, i, j))


def run_corpus(items: Iterable[bytes]) -> int:
    """Check every item; returns how many were checked."""
    count = 0
    for count, data in enumerate(items, 1):
        check_one(bytes(data))
    return count


def seeds() -> list[bytes]:
    """Edge keys (all ones = P = 0 mod P, all zeros, the top bit alone) and argument edges."""
    edge = [b"\xff" * 32, b"\x00" * 32, b"\x80" + b"\x00" * 31, b"\xff" * 16 + b"\x00" * 16,
            b"\xfe" + b"\xff" * 31, bytes(range(32)), bytes(range(32, 64))]
    blob = b"".join(sorted(edge))
    return [bytes([0, 7, 12, 0, 4, 64]) + blob, bytes([0, 7, 64, 120, 8, 1]) + blob,
            bytes([2, 5, 1, 127, 1, 3]) + blob, bytes([5, 2, 12, 0, 4, 64]) + blob,
            bytes([0, 9, 12, 0, 4, 64]) + blob, bytes([0, 7, 0, 0, 0, 0]) + blob,
            bytes([0, 7, 65, 0, 17, 1]) + blob, bytes([0, 0, 1, 0, 1, 1]),
            bytes([0, 1, 3, 0, 2, 2]) + blob[:-1], bytes([1, 6, 16, 100, 16, 5]) + blob]


def main() -> None:
    import atheris

    def test_one_input(data: bytes) -> None:
        check_one(data)

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
