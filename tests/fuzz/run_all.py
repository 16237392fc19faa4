"""Runs every atheris target in this directory for a bounded number of inputs, each started from
its own seed corpus (``seeds()``), and fails if any target fails.

``python tests/fuzz/run_all.py --runs 20000``.  With the extensions built by ``AURA_FUZZ=1``
(clang, ``-fsanitize=address,fuzzer-no-link``) the C is coverage-instrumented: pass
``--preload`` so each target runs under atheris' ASan+libFuzzer runtime and libFuzzer is guided
by the C's edges, not only by the Python ones.  CI (.ci/run) does both.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


# Run in the target's own environment (an instrumented build only loads under the preload).
WRITE_SEEDS = """
import runpy, sys, pathlib
mod = runpy.run_path(sys.argv[1])
fn = mod.get("seeds")
if fn is None:
    sys.exit(sys.argv[1] + ": no seeds()")
for i, s in enumerate(fn()):
    pathlib.Path(sys.argv[2], f"seed{i:04d}").write_bytes(s)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20000)
    ap.add_argument("--preload", action="store_true",
                    help="LD_PRELOAD atheris' asan_with_fuzzer.so (extensions built with AURA_FUZZ=1)")
    ap.add_argument("targets", nargs="*", help="default: every fuzz_*.py here")
    args = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if args.preload:
        import atheris

        env["LD_PRELOAD"] = str(Path(atheris.path()) / "asan_with_fuzzer.so")
        env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=1"
    targets = [Path(t) for t in args.targets] or sorted(HERE.glob("fuzz_*.py"))
    failed = []
    for target in targets:
        with tempfile.TemporaryDirectory(prefix=f"{target.stem}-") as corpus:
            proc = subprocess.run([sys.executable, "-c", WRITE_SEEDS, str(target), corpus],
                                  env=env, capture_output=True, text=True)
            if proc.returncode == 0:
                proc = subprocess.run(
                    [sys.executable, str(target), f"-runs={args.runs}", "-max_len=4096",
                     "-timeout=10", corpus], env=env, capture_output=True, text=True)
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        done = next((ln for ln in reversed(lines) if "DONE" in ln), lines[-1] if lines else "")
        print(f"fuzz {target.name}: rc={proc.returncode} {done}", flush=True)
        if proc.returncode != 0:
            print("\n".join(lines[-40:]))
            failed.append(target.name)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
