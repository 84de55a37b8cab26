"""The few statistics the benchmarks report: medians with their range, quantiles, per-round ratios."""

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
