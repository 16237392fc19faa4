"""The compiled modules are mandatory, are the ones imported, and load libsodium once."""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.native

ROOT = Path(__file__).resolve().parent.parent


def _compiled_names():
    names = {p.stem for p in (ROOT / "aura_core").glob("_*.pyx")}
    assert "_sodium" in names
    return sorted(names)


@pytest.mark.parametrize("name", _compiled_names())
def test_module_is_a_compiled_extension(name):
    module = importlib.import_module(f"aura_core.{name}")
    assert module.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), module.__file__
    assert isinstance(module.__loader__, importlib.machinery.ExtensionFileLoader)
    stub = ROOT / "aura_core" / f"{name}.pyi"
    assert stub.exists(), f"{name} has no .pyi stub"


def test_libsodium_table_comes_from_pynacl_by_default():
    import nacl._sodium

    from aura_core import _sodium
    if not os.environ.get("AURA_LIBSODIUM"):
        assert os.path.samefile(_sodium.LIBRARY_PATH, nacl._sodium.__file__)
    assert len(_sodium.random_bytes(32)) == 32
    assert _sodium.random_bytes(32) != _sodium.random_bytes(32)
    assert _sodium.random_bytes(0) == b""
    with pytest.raises(ValueError):
        _sodium.random_bytes(-1)


def _import_with(lib: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, AURA_LIBSODIUM=lib)
    return subprocess.run([sys.executable, "-c", "import aura_core"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_missing_library_is_a_clear_import_error():
    proc = _import_with("/nonexistent/libsodium.so")
    assert proc.returncode != 0
    assert "LibraryError" in proc.stderr and "/nonexistent/libsodium.so" in proc.stderr


def test_missing_symbol_is_named():
    import ctypes.util
    libc = ctypes.util.find_library("c") or "libc.so.6"
    proc = _import_with(libc)
    assert proc.returncode != 0
    assert "does not export sodium_init" in proc.stderr
