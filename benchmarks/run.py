"""Run every ``benchmarks/bench_*.py`` and print one table (``make bench``).

Usage: ``python benchmarks/run.py [--quick] [NAME ...]``

The table shows, per stage, items/s of the textbook approach and of medimg, their
ratio, and a peers column: for each peer library (MONAI, TorchIO, kornia) medimg's
speed relative to it (``2.0x``: medimg twice as fast) and what was checked to agree,
or "not installed". Run it with the side environment of ``benchmarks/README.md``
(``.venv-peers/bin/python benchmarks/run.py``) to fill the peers column.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from harness import MARKER, PEER_MODULES, format_peers, peer_version

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
    installed = [peer_version(name) or f"{name} not installed" for name in PEER_MODULES]
    header = f"{'stage':<48} {'textbook/s':>12} {'medimg/s':>12} {'ratio':>8}  peers"
    print(f"\npeers: {', '.join(installed)} (peer ratio = medimg speed / peer speed)")
    print(header + "\n" + "-" * len(header))
    for r in rows:
        print(f"{r['stage']:<48} {r['textbook_items_per_s']:>12.3g} "
              f"{r['medimg_items_per_s']:>12.3g} {r['ratio']:>7.1f}x  "
              f"{format_peers(r.get('peers', [])) or '-'}")
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
