"""Registers ``aura-core demo`` (the run itself is aura_core/asyncio/demo.py: it does I/O)."""

from __future__ import annotations

import argparse

from .cli import _register


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--messages", type=int, default=20, help="messages per exchange (default 20)")


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from .asyncio.demo import run

    return asyncio.run(run(messages=args.messages))


_register("demo", "end-to-end run: relay, descriptors via sync, channel, direct upgrade, rotation",
          _args, _run)
