# Stub of aura_core._reconcile (aura_core/_reconcile.pyx over csrc/reconcile): GF(2^127 - 1)
# moments of packed sorted 32-byte hashes.  A key is the top 127 bits of a hash, mod 2^127 - 1.
from typing import Union

Buffer = Union[bytes, bytearray, memoryview]

MAX_POWERS: int  # 64
MAX_FANOUT_BITS: int  # 16

def power_sums(hashes: Buffer, i: int, j: int, m: int) -> list[int]: ...
def prefix_moments(hashes: Buffer, step: int) -> tuple[list[int], list[int], int]: ...
def cells(hashes: Buffer, i: int, j: int, k: int, b: int) -> list[tuple[int, int, int]]: ...
