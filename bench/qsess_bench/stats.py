"""The few statistics the benchmarks report: medians with their range, quantiles, per-round ratios, and the order
the sides of a side-by-side comparison run in."""

from __future__ import annotations

import statistics


def spread(values: list[float], form: str = ",.0f") -> str:
    """`median (min–max)`, each formatted with `form`."""
    return f"{format(statistics.median(values), form)} ({format(min(values), form)}–{format(max(values), form)})"


def nearest_rank(sorted_values: list[float], quantile: float) -> float:
    """The nearest-rank quantile of already sorted values."""
    return sorted_values[min(len(sorted_values) - 1, max(0, int(quantile * len(sorted_values) + 0.5) - 1))]


def per_round_ratios(numerator: dict[int, float], denominator: dict[int, float]) -> list[float]:
    """numerator / denominator for every round both have (a zero denominator skips its round)."""
    return [numerator[r] / denominator[r] for r in sorted(set(numerator) & set(denominator)) if denominator[r] > 0]


def in_round_order(round_number: int, tests: list[str]) -> list[str]:
    """The tests of one group in the order round `round_number` (from 1) runs them: as listed (qsess first) in odd
    rounds, reversed (the baselines first) in even rounds, so neither side always runs on a server the other
    just warmed (or fragmented)."""
    return list(tests) if round_number % 2 == 1 else list(reversed(tests))
