"""Rare-token recall: how much of the human tail a model still writes.

Rare is defined on the human training split, over words (see testbed.text).
"""
from collections import Counter


def word_counts(docs: list[list[str]]) -> Counter:
    counts = Counter()
    for d in docs:
        counts.update(d)
    return counts


def rare_types(counts: Counter, max_count: int) -> set[str]:
    """Word types occurring at least once and at most max_count times."""
    return {w for w, c in counts.items() if 0 < c <= max_count}


def recall(rare: set[str], sample: list[list[str]]) -> float:
    """Share of the rare types that appear at least once in the sample."""
    if not rare:
        return 0.0
    seen = {w for d in sample for w in d}
    return len(rare & seen) / len(rare)
