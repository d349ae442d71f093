"""Prints the robustness counts (cases, right, clean error, other) after the run."""

from __future__ import annotations

from ._support import CLEAN, OTHER, OUTCOMES, RIGHT


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not OUTCOMES:
        return
    groups = sorted({group for group, _ in OUTCOMES})
    width = max(len(g) for g in groups)
    terminalreporter.write_sep("-", "robustness cases")
    totals = dict.fromkeys((RIGHT, CLEAN, OTHER), 0)
    for group in groups:
        counts = {o: OUTCOMES[(group, o)] for o in totals}
        for outcome, n in counts.items():
            totals[outcome] += n
        terminalreporter.write_line(
            f"{group:<{width}}  cases {sum(counts.values()):4d}  right {counts[RIGHT]:4d}  "
            f"clean error {counts[CLEAN]:4d}  other {counts[OTHER]:4d}")
    terminalreporter.write_line(
        f"{'total':<{width}}  cases {sum(totals.values()):4d}  right {totals[RIGHT]:4d}  "
        f"clean error {totals[CLEAN]:4d}  other {totals[OTHER]:4d}")
