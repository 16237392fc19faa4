"""``aura-core relay``: run a relay node (configuration by TOML file and flags).

Flags override the file; the file is a TOML table ``[relay]`` (or top-level keys) with the
same names as the long flags, ``-`` written ``_``.  The node runs one worker per core
(aura_core.asyncio.relay.run_node) until SIGTERM/SIGINT, then drains gracefully.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path
from typing import Any

from .cli import _register

__all__ = ["settings_from", "build_args"]

# name -> (type, help); defaults come from NodeSettings
_OPTIONS: dict[str, tuple[type, str]] = {
    "host": (str, "address to listen on (default 127.0.0.1)"),
    "port": (int, "WebSocket port (0: any free port)"),
    "workers": (int, "worker processes (0: one per core)"),
    "metrics_host": (str, "address of the Prometheus endpoint"),
    "metrics_port": (int, "Prometheus text endpoint port (unset: off)"),
    "queue_limit": (int, "frames queued per client before counted drops"),
    "queue_bytes": (int, "bytes queued per client before counted drops"),
    "max_frame": (int, "largest SEND message accepted, bytes"),
    "max_clients": (int, "connections per worker"),
    "rate": (float, "frames per second per client (token bucket refill)"),
    "burst": (float, "token bucket size (frames)"),
    "auth_rate": (float, "AUTH attempts per second per worker (beyond: refused unverified)"),
    "auth_burst": (float, "AUTH attempts allowed in a burst"),
    "budget": (int, "flow budget opened per (context, client) per epoch"),
    "epoch": (int, "flow-budget / receipt epoch (fixed)"),
    "epoch_seconds": (float, "epoch length: epoch = floor(unix time / this); budgets reset each epoch"),
    "auth_timeout": (float, "seconds a connection may stay unauthenticated"),
    "write_timeout": (float, "seconds a write may block before the reader is dropped"),
    "drain_timeout": (float, "seconds allowed to flush queues at shutdown"),
    "receipt_window": (float, "seconds a receipt window stays open"),
    "receipts_dir": (str, "directory to append signed receipts to (one file per worker)"),
    "identity_key": (str, "file holding the relay's Ed25519 seed (32 raw bytes or 64 hex)"),
    "biscuit_root": (str, "Biscuit root public key (64 hex) or a file holding it"),
    "log_level": (str, "debug, info, warning"),
}
_FLAGS = ("uvloop", "no_receipts", "no_guards", "ephemeral_identity")


def build_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML configuration file")
    for name, (kind, help_) in _OPTIONS.items():
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=help_)
    p.add_argument("--uvloop", action="store_true", default=None, help="use uvloop if installed")
    p.add_argument("--no-receipts", action="store_true", default=None, help="do not issue receipts")
    p.add_argument("--no-guards", action="store_true", default=None,
                   help="benchmarks only: forward without per-frame guards, budgets or receipts")
    p.add_argument("--ephemeral-identity", action="store_true", default=None,
                   help="sign receipts with a fresh key (no --identity-key)")


def _hex_or_file(value: str, size: int, what: str) -> bytes:
    text = value.strip()
    try:
        raw = bytes.fromhex(text)
        if len(raw) == size:
            return raw
    except ValueError:
        pass
    data = Path(text).read_bytes()
    if len(data) == size:
        return data
    try:
        raw = bytes.fromhex(data.decode().strip())
    except (UnicodeDecodeError, ValueError):
        raw = b""
    if len(raw) != size:
        raise SystemExit(f"aura-core relay: {what} must be {size} bytes (raw or hex)")
    return raw


def settings_from(args: argparse.Namespace) -> Any:
    from .asyncio.relay import NodeSettings

    conf: dict[str, Any] = {}
    if args.config:
        with open(args.config, "rb") as f:
            doc = tomllib.load(f)
        conf = dict(doc.get("relay", doc))
        unknown = set(conf) - set(_OPTIONS) - set(_FLAGS)
        if unknown:
            raise SystemExit(f"aura-core relay: unknown configuration keys {sorted(unknown)}")
    for name in (*_OPTIONS, *_FLAGS):
        value = getattr(args, name, None)
        if value is not None:
            conf[name] = value
    s = NodeSettings()
    for name, (kind, _) in _OPTIONS.items():
        if name in conf and name not in ("identity_key", "biscuit_root"):
            setattr(s, name, kind(conf[name]))
    s.uvloop = bool(conf.get("uvloop", False))
    s.receipts = not conf.get("no_receipts", False)
    s.guards = not conf.get("no_guards", False)
    if "biscuit_root" not in conf:
        raise SystemExit("aura-core relay: --biscuit-root is required (clients authenticate with Biscuit)")
    s.biscuit_root = _hex_or_file(str(conf["biscuit_root"]), 32, "the Biscuit root public key")
    if "identity_key" in conf:
        s.identity_key = _hex_or_file(str(conf["identity_key"]), 32, "the identity key seed")
    elif s.receipts and s.guards and not conf.get("ephemeral_identity", False):
        raise SystemExit("aura-core relay: receipts need --identity-key (or --ephemeral-identity)")
    return s


def _run(args: argparse.Namespace) -> int:
    import json
    import logging

    from .asyncio.relay import run_node

    s = settings_from(args)
    logging.basicConfig(level=s.log_level.upper(), format="%(message)s", stream=sys.stderr)

    def ready(info: dict[str, Any]) -> None:
        print(json.dumps(info), flush=True)  # on stdout: scripts wait for this line

    return run_node(s, ready=ready)


_register("relay", "run a relay node (WebSocket, one worker per core)", build_args, _run)
