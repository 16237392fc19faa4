"""Relay envelope ids and forward commitments in C (aura_core._receipt) against the references:
``aura_core.relay.envelope_id`` (hashlib) and sorted-then-BLAKE2b in Python (docs/wire.md)."""

from __future__ import annotations

import os
import random

import pytest

from aura_core import _receipt
from aura_core.errors import InvalidValue
from aura_core.receipts import forward_commitment
from aura_core.relay import ReceiptWindows, encode_deliver, envelope_id
from tests.fuzz.fuzz_receipt import check_envelope, forward_commitment_ref

pytestmark = pytest.mark.native

SEED = int(os.environ.get("AURA_TEST_SEED", random.randrange(1 << 32)))


def rng() -> random.Random:
    print(f"AURA_TEST_SEED={SEED}")
    return random.Random(SEED)


@pytest.mark.parametrize("n", [*range(0, 41), 63, 64, 65, 1367, 65535])
def test_envelope_id_matches_reference_for_every_payload_length(n: int) -> None:
    r = rng()
    for _ in range(8):
        frame = encode_deliver(r.randbytes(16), r.randbytes(16), r.randbytes(n))
        want = envelope_id(frame)
        assert _receipt.envelope_id(frame) == want
        assert _receipt.envelope_id(bytearray(frame)) == want
        ids = bytearray()
        assert _receipt.add_envelope_id(ids, frame) == 1 and bytes(ids) == want


def test_envelope_id_reads_only_the_last_32_payload_bytes_and_the_length() -> None:
    r = rng()
    head, tail = r.randbytes(33), r.randbytes(32)
    a = _receipt.envelope_id(head + b"A" * 10 + tail)
    assert a == _receipt.envelope_id(head + b"B" * 10 + tail)   # same length and tail
    assert a != _receipt.envelope_id(head + b"A" * 11 + tail)   # the length is bound
    assert a != _receipt.envelope_id(head[:1] + bytes(32) + b"A" * 10 + tail)  # so are ctx, src


def test_add_envelope_id_appends_and_counts() -> None:
    r = rng()
    frames = [encode_deliver(r.randbytes(16), r.randbytes(16), r.randbytes(r.randrange(80)))
              for _ in range(50)]
    ids = bytearray()
    for i, f in enumerate(frames):
        assert _receipt.add_envelope_id(ids, f) == i + 1
    assert bytes(ids) == b"".join(envelope_id(f) for f in frames)
    assert _receipt.add_envelope_id(ids, memoryview(frames[0])) == 51  # any buffer (copied)


@pytest.mark.parametrize("bad", [b"", b"\x11", bytes(32)])
def test_short_frames_are_refused_and_leave_the_window_untouched(bad: bytes) -> None:
    ids = bytearray(32)
    for call in (lambda: _receipt.envelope_id(bad), lambda: _receipt.add_envelope_id(ids, bad)):
        with pytest.raises(InvalidValue):
            call()
    assert ids == bytearray(32)
    with pytest.raises(InvalidValue):
        envelope_id(bad)  # the reference agrees


def test_misaligned_packed_ids_are_refused() -> None:
    with pytest.raises(InvalidValue):
        _receipt.add_envelope_id(bytearray(31), bytes(40))
    with pytest.raises(InvalidValue):
        _receipt.forward_commitment_packed(bytearray(33))


@pytest.mark.parametrize("n", [0, 1, 2, 16, 17, 255, 1024, 3000])
def test_forward_commitment_matches_reference_and_sorts_in_place(n: int) -> None:
    r = rng()
    ids = [r.randbytes(32) for _ in range(n)]
    if n > 2:  # duplicates (a multiset) and ids sharing long prefixes
        ids += [ids[0], ids[1][:31] + bytes([ids[1][31] ^ 1]), ids[2][:9] + r.randbytes(23)]
    packed = bytearray(b"".join(ids))
    want = forward_commitment_ref(bytes(packed))
    assert _receipt.forward_commitment_packed(packed) == want
    assert bytes(packed) == b"".join(sorted(ids))
    assert forward_commitment(ids).digest == want
    assert forward_commitment(reversed(ids)).digest == want  # order-free


def test_forward_commitment_crowded_first_byte() -> None:
    # ids ground to share a first byte take the qsort path (bounded cost) and still agree
    r = rng()
    ids = [b"\x07" + r.randbytes(31) for _ in range(600)] + [r.randbytes(32) for _ in range(100)]
    assert _receipt.forward_commitment_packed(bytearray(b"".join(ids))) == forward_commitment_ref(
        b"".join(ids))


def test_windows_commit_to_the_reference_ids() -> None:
    r = rng()
    ctx, dst = r.randbytes(16), r.randbytes(16)
    windows = ReceiptWindows(window=1.0, max_cost=40)
    frames = [encode_deliver(ctx, r.randbytes(16), r.randbytes(r.randrange(70))) for _ in range(45)]
    for f in frames:
        windows(ctx, f[17:33], dst, f, 0.0)
    (full,) = windows.take_ready()
    (rest,) = windows.flush()
    assert (full.count, full.cost, rest.count) == (40, 40, 5)
    assert full.commit.digest == forward_commitment_ref(b"".join(map(envelope_id, frames[:40])))
    assert rest.commit == forward_commitment([envelope_id(f) for f in frames[40:]])


def test_envelope_fuzz_checks_over_random_bytes() -> None:
    r = rng()
    for _ in range(300):
        n = r.choice([r.randrange(100), r.randrange(2000)])
        check_envelope(bytes([0x11]) + r.randbytes(n) if r.random() < 0.5 else r.randbytes(n))
