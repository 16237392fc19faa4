"""Registers ``aura-core demo`` (the runs do I/O: aura_core/asyncio/demo.py on loopback,
aura_core/netlab/demo.py across the NAT lab with ``--netlab``)."""

from __future__ import annotations

import argparse

from .cli import _register


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--messages", type=int, default=20, help="messages per exchange (default 20)")
    p.add_argument("--netlab", action="store_true",
                   help="run across the NAT lab (root; needs ip, nft, turnserver): each authority "
                        "behind its own NAT, relay and journal in a public namespace")
    p.add_argument("--modes", default=None,
                   help="with --netlab: comma-separated NAT pairs (default cone-cone,"
                        "symmetric-symmetric; also fullcone-symmetric, cone-symmetric, "
                        "cone-cone-clash)")


def _run(args: argparse.Namespace) -> int:
    if args.netlab:
        from .netlab.demo import DEFAULT_MODES, run as run_netlab

        modes = tuple(m.strip() for m in args.modes.split(",") if m.strip()) if args.modes else DEFAULT_MODES
        return run_netlab(modes=modes, messages=args.messages)
    if args.modes:
        raise SystemExit("aura-core demo: --modes needs --netlab")
    import asyncio

    from .asyncio.demo import run

    return asyncio.run(run(messages=args.messages))


_register("demo", "end-to-end run: relay, descriptors via sync, channel, direct upgrade, rotation "
                  "(--netlab: across real NATs)", _args, _run)
