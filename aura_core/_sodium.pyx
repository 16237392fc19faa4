# cython: language_level=3
# _sodium.pyx — loads libsodium once per process and publishes its function table.
#
# The table (csrc/common/aura_sodium.h) is filled from, in order of preference:
#   1. the path in $AURA_LIBSODIUM, if set (operators pinning a build);
#   2. the system libsodium found by pkg-config at build time, when built with AURA_SYSTEM_SODIUM=1;
#   3. PyNaCl's extension `nacl._sodium`, which exports all of libsodium's symbols.
# Other extensions receive the table through the `_TABLE` capsule (see _sodium_api.pxd).

import os

from cpython.pycapsule cimport PyCapsule_New

from aura_core.errors import LibraryError

cdef extern from "aura_sodium.h":
    ctypedef struct aura_sodium_t:
        const char *path
    int aura_sodium_load(const char *path, char *err, size_t errlen)
    const aura_sodium_t *aura_sodium_table()

cdef extern from *:
    """
    #ifndef AURA_SYSTEM_SODIUM_PATH
    #define AURA_SYSTEM_SODIUM_PATH ""
    #endif
    """
    const char *AURA_SYSTEM_SODIUM_PATH


def _candidates():
    env = os.environ.get("AURA_LIBSODIUM")
    if env:
        return [env]
    found = []
    system = (<bytes> AURA_SYSTEM_SODIUM_PATH).decode()
    if system:
        found.append(system)
    try:
        import nacl._sodium
    except ImportError as exc:  # pragma: no cover - pynacl is a hard dependency
        if not found:
            raise LibraryError(f"aura_core needs PyNaCl (libsodium) and cannot import it: {exc}") from exc
    else:
        found.append(nacl._sodium.__file__)
    return found


cdef char _err[512]


def _load():
    errors = []
    for path in _candidates():
        if aura_sodium_load(os.fsencode(path), _err, sizeof(_err)) == 0:
            return path
        errors.append((<bytes> _err).decode(errors="replace"))
    raise LibraryError("cannot load libsodium: " + "; ".join(errors))


LIBRARY_PATH: str = _load()
_TABLE = PyCapsule_New(<void *> aura_sodium_table(), b"aura_core._sodium._TABLE", NULL)


def random_bytes(Py_ssize_t n) -> bytes:
    """n bytes from libsodium's CSPRNG (the default randomness source of the package)."""
    if n < 0:
        raise ValueError("n must be non-negative")
    out = bytearray(n)
    cdef unsigned char[::1] view = out
    if n:
        _randombytes(&view[0], <size_t> n)
    return bytes(out)


cdef extern from *:
    """
    static void _randombytes(unsigned char *p, size_t n) { aura_na->randombytes_buf(p, n); }
    """
    void _randombytes(unsigned char *p, size_t n) nogil
