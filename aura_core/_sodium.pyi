"""Loads libsodium once per process and publishes its function table to the other extensions."""

LIBRARY_PATH: str
"""The shared object the libsodium table was filled from."""

def random_bytes(n: int) -> bytes:
    """``n`` bytes from libsodium's CSPRNG."""
