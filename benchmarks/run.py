"""Run every ``benchmarks/bench_*.py`` and print one table (``make bench``).

Usage: ``python benchmarks/run.py [--quick] [NAME ...]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from harness import MARKER

HERE = Path(__file__).resolve().parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("names", nargs="*", help="substrings of benchmark names to run")
    args = p.parse_args()
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.names:
        scripts = [s for s in scripts if any(n in s.stem for n in args.names)]
    rows, failed = [], []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        cmd = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE)
        for line in proc.stdout.splitlines():
            if line.startswith(MARKER):
                rows.append(json.loads(line[len(MARKER):]))
            else:
                print("   " + line)
        if proc.returncode != 0:
            failed.append(script.name)
            print(proc.stderr[-3000:], file=sys.stderr)
    header = f"{'stage':<48} {'textbook/s':>12} {'medimg/s':>12} {'ratio':>8}"
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        print(f"{r['stage']:<48} {r['textbook_items_per_s']:>12.3g} "
              f"{r['medimg_items_per_s']:>12.3g} {r['ratio']:>7.1f}x")
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
