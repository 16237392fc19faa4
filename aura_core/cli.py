"""The ``aura-core`` command line (also ``python -m aura_core``).

Subcommands: ``version``, ``selftest`` (every shipped vector set), ``vectors`` (regenerate the
project's own interop vectors), ``bench`` (throughput against peers and limits).  Later parts
add ``demo`` and ``relay`` by registering in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from importlib import resources

__all__ = ["main", "COMMANDS"]


def _cmd_version(args: argparse.Namespace) -> int:
    from . import __version__, _sodium

    print(f"aura-core {__version__} (libsodium from {_sodium.LIBRARY_PATH})")
    return 0


def _cmd_selftest(args: argparse.Namespace) -> int:
    from .selftest import run

    passed, failed = run(sys.stdout, verbose=args.verbose)
    return 1 if failed or not passed else 0


def _cmd_vectors(args: argparse.Namespace) -> int:
    import importlib
    from pathlib import Path

    from .selftest import GENERATORS

    out = Path(args.out) if args.out else Path(str(resources.files("aura_core.vectors")))
    for name, spec in GENERATORS.items():
        module, _, func = spec.partition(":")
        doc = getattr(importlib.import_module(module), func)()
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {target}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .benchsuite import discover
    from .benchsuite._runner import format_table, ratios, run_groups

    groups = discover(args.filter or None)
    if not groups:
        print("no benchmark group matches", file=sys.stderr)
        return 2
    results = run_groups(groups, sample_seconds=args.seconds, samples=args.samples,
                         progress=None if args.json else sys.stderr)
    rows = ratios(groups, results)
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
    else:
        print(format_table(rows))
    return 0


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def _register(name: str, help_: str, build: Callable[[argparse.ArgumentParser], None],
              run: Callable[[argparse.Namespace], int]) -> None:
    COMMANDS[name] = (help_, build, run)


def _no_args(p: argparse.ArgumentParser) -> None:
    pass


def _selftest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="store_true", help="list passing cases too")


def _vectors_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="directory to write to (default: the package's vectors folder)")


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("filter", nargs="*", help="substrings of group keys (suite/group) to run")
    p.add_argument("--json", action="store_true", help="machine-readable rows on stdout")
    p.add_argument("--seconds", type=float, default=0.2, help="length of one timed sample")
    p.add_argument("--samples", type=int, default=5, help="samples per contender (median kept)")


_register("version", "print the version and the libsodium in use", _no_args, _cmd_version)
_register("selftest", "run every shipped known-answer vector set", _selftest_args, _cmd_selftest)
_register("vectors", "regenerate the project's own interop vectors", _vectors_args, _cmd_vectors)
_register("bench", "throughput against peers and the raw primitive, as ratios", _bench_args, _cmd_bench)


def _extra_commands() -> None:
    """Commands that live with their parts (demo, relay) register on import, if present."""
    import importlib

    for module in ("aura_core.demo", "aura_core.relay_cli"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def build_parser() -> argparse.ArgumentParser:
    _extra_commands()
    parser = argparse.ArgumentParser(prog="aura-core", description="aura_core protocol core")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_, build, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        build(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
