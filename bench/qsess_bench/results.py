"""Where a benchmark's Markdown report goes: bench/results/<name>, and stdout."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"


def publish(name: str, report: str) -> None:
    """Writes `report` to bench/results/`name` and prints it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / name).write_text(report)
    print(report)
