# _sodium_api.pxd — how a compiled module gets the one libsodium table (csrc/common/aura_sodium.h).
#
# Every extension calls `import_sodium()` once at module import, before any C code runs:
#
#     from aura_core._sodium_api cimport import_sodium
#     import_sodium()
#
# It imports aura_core._sodium (which loads libsodium and runs sodium_init() exactly once) and
# points this module's `aura_na` at the shared table carried by the `_TABLE` capsule.

from cpython.pycapsule cimport PyCapsule_Import

cdef extern from "aura_sodium.h":
    ctypedef struct aura_sodium_t:
        const char *path
    const aura_sodium_t *aura_na

cdef inline int import_sodium() except -1:
    global aura_na
    aura_na = <const aura_sodium_t *> PyCapsule_Import(b"aura_core._sodium._TABLE", 0)
    return 0
