# Stub of aura_core._receipt (aura_core/_receipt.pyx over csrc/receipt): packed 200-byte receipts.
from typing import Union

Buffer = Union[bytes, bytearray, memoryview]

RECEIPT_LEN: int  # 200
BODY_LEN: int  # 136 (a receipt without its signature)
TRANSCRIPT_LEN: int  # 152
MAX_THREADS: int  # 16

def transcript(rec: Buffer) -> bytes: ...
def receipt_hash(rec: Buffer) -> bytes: ...
def authority_id(pk: Buffer) -> bytes: ...
def sign_batch(recs: Buffer, sk: Buffer, link: bool = True, threads: int = 1) -> bytes: ...
def verify_chain(
    recs: Buffer,
    pk: Buffer,
    *,
    ctx: bytes | None = None,
    dst: bytes | None = None,
    start_prev: bytes | None = None,
    after_nonce: int | None = None,
    epoch: int | None = None,
    limit: int | None = None,
    spent_before: int = 0,
    threads: int = 1,
) -> tuple[int, bytes, int]: ...
def envelope_id(frame: Buffer) -> bytes: ...
def add_envelope_id(ids: bytearray, frame: Buffer) -> int: ...
def forward_commitment_packed(ids: bytearray | memoryview) -> bytes: ...  # sorts ids in place
def _bench_raw_sign(n: int, sk: Buffer) -> int: ...
def _bench_raw_verify(n: int, sig: Buffer, msg: Buffer, pk: Buffer) -> int: ...
