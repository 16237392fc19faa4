"""Build of aura_core's compiled extensions (all metadata lives in pyproject.toml).

Convention: every ``aura_core/_<name>.pyx`` is one extension module built from that file, the C
files in ``csrc/<name>/`` and ``csrc/common/``.  Adding a compiled module needs no change here.

Switches (environment):
  AURA_DEBUG=1          -O0 -g, assertions on
  AURA_SANITIZE=1       AddressSanitizer + UndefinedBehaviorSanitizer (implies -O1 -g); run Python
                        with LD_PRELOAD="$(gcc -print-file-name=libasan.so)" (see .ci/run)
  AURA_FUZZ=1           clang with AddressSanitizer + libFuzzer coverage (-fsanitize=fuzzer-no-link)
                        for coverage-guided atheris runs; the runtimes are not linked in: run
                        Python with LD_PRELOAD="<atheris.path()>/asan_with_fuzzer.so" (see .ci/run)
  AURA_SYSTEM_SODIUM=1  prefer a system libsodium found by pkg-config over PyNaCl's copy
"""

import os
import subprocess
from glob import glob
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

ROOT = Path(__file__).parent


def flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false", "no")


def compile_args() -> tuple[list[str], list[str], list[tuple[str, str | None]]]:
    cflags = ["-std=c11", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-function",
              "-Wno-unused-parameter", "-Wno-missing-field-initializers"]
    ldflags: list[str] = ["-ldl"]
    macros: list[tuple[str, str | None]] = []
    if flag("AURA_FUZZ"):
        # Compile-only flags: atheris' preloaded runtime supplies ASan and the coverage hooks,
        # and clang's static ASan archive is not needed (nor always installed) for a .so.
        os.environ.setdefault("CC", "clang")
        os.environ.setdefault("LDSHARED", "clang -shared")
        cflags += ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,fuzzer-no-link"]
    elif flag("AURA_SANITIZE"):
        san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
               "-fno-omit-frame-pointer"]
        cflags += ["-O1", "-g"] + san
        ldflags += san
    elif flag("AURA_DEBUG"):
        cflags += ["-O0", "-g", "-UNDEBUG"]
    else:
        cflags += ["-O3"]
        macros.append(("NDEBUG", "1"))
    if flag("AURA_SYSTEM_SODIUM"):
        try:
            libdir = subprocess.run(["pkg-config", "--variable=libdir", "libsodium"],
                                    check=True, capture_output=True, text=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            libdir = ""
        if libdir and Path(libdir, "libsodium.so").exists():
            macros.append(("AURA_SYSTEM_SODIUM_PATH", f'"{Path(libdir, "libsodium.so")}"'))
    return cflags, ldflags, macros


def extensions() -> list[Extension]:
    cflags, ldflags, macros = compile_args()
    common = sorted(glob("csrc/common/*.c"))
    exts = []
    for pyx in sorted(glob("aura_core/_*.pyx")):
        name = Path(pyx).stem[1:]
        own = sorted(glob(f"csrc/{name}/*.c"))
        exts.append(Extension(
            f"aura_core._{name}",
            sources=[pyx, *own, *common],
            include_dirs=["csrc/common", f"csrc/{name}"],
            extra_compile_args=cflags,
            extra_link_args=ldflags,
            define_macros=macros,
        ))
    return exts


setup(
    ext_modules=cythonize(
        extensions(),
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False,
                             "cdivision": True, "embedsignature": True},
        include_path=["aura_core"],
        quiet=True,
    ),
)
