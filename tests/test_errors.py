"""The exception tree: one root, drawn in errors.py's docstring, idiomatic builtin mix-ins."""

from __future__ import annotations

import inspect

import aura_core
from aura_core import errors


def _classes():
    return [getattr(errors, n) for n in errors.__all__]


def test_every_error_derives_from_aura_error_and_is_exported():
    for cls in _classes():
        assert issubclass(cls, errors.AuraError)
        assert getattr(aura_core, cls.__name__) is cls


def test_every_error_is_drawn_in_the_docstring():
    doc = errors.__doc__ or ""
    for cls in _classes():
        assert f" {cls.__name__}" in doc, cls.__name__


def test_no_error_shadows_a_builtin_name():
    import builtins
    for cls in _classes():
        assert not hasattr(builtins, cls.__name__), cls.__name__


def test_no_exception_class_defined_outside_errors():
    import importlib
    import pkgutil
    for info in pkgutil.walk_packages(aura_core.__path__, "aura_core."):
        if info.name.startswith(("aura_core.benchsuite", "aura_core.asyncio", "aura_core.__main__",
                                 "aura_core.errors")):
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:
            continue
        for _, obj in inspect.getmembers(module, inspect.isclass):
            # private classes are internal control flow that never escapes the module
            if (obj.__module__ == info.name and issubclass(obj, BaseException)
                    and not obj.__name__.startswith("_")):
                raise AssertionError(f"{info.name}.{obj.__name__} defines an exception outside errors.py")


def test_wire_attributes():
    assert errors.DecodeError("bad head", offset=7).offset == 7
    assert "at byte 7" in str(errors.DecodeError("bad head", offset=7))
    assert errors.ChainError("broken prev", index=3).index == 3
    assert errors.SignatureError("bad", index=2).index == 2
    assert errors.ProtocolError("x", code=4).code == 4
    assert str(errors.AuthorizationError()) == "authorization failed"
    assert issubclass(errors.DecodeError, ValueError)
    assert issubclass(errors.UsageError, RuntimeError)
    assert issubclass(errors.LibraryError, ImportError)
