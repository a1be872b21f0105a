"""The shape of a frequency distribution, and its distance from the human one.

Collapse moves mass from the tail to the head: entropy falls, the
rank-frequency curve steepens, fewer types are used, and the distance from
the human distribution grows. All figures are in bits and take counts
(collections.Counter) of words or ids; entropy and the number of types
depend on sample size, so they are computed on samples of one fixed size.
"""
from collections import Counter

import numpy as np


def entropy(counts: Counter) -> float | None:
    """Shannon entropy of the empirical distribution, in bits (plug-in estimate); None for no counts."""
    c = np.array([v for v in counts.values() if v > 0], dtype=np.float64)
    if not len(c):
        return None
    p = c / c.sum()
    return float(-(p * np.log2(p)).sum())


def _aligned(p: Counter, q: Counter) -> tuple[np.ndarray, np.ndarray]:
    # Sorted: a sum in set order would depend on Python's hash seed in its last digits.
    keys = sorted(p.keys() | q.keys(), key=str)
    return (np.array([p.get(k, 0) for k in keys], dtype=np.float64),
            np.array([q.get(k, 0) for k in keys], dtype=np.float64))


def kl_divergence(p: Counter, q: Counter, alpha: float = 1.0) -> float | None:
    """KL(p || q) in bits, both smoothed add-alpha over the union of their types; None when either has no counts
    (smoothing alone would make an empty sample a uniform distribution, a figure of nothing measured).

    Smoothing keeps a type that q never produced from making the divergence
    infinite; what it costs is then set by alpha and q's size.
    """
    a, b = _aligned(p, q)
    if not a.sum() or not b.sum():
        return None
    a = (a + alpha) / (a.sum() + alpha * len(a))
    b = (b + alpha) / (b.sum() + alpha * len(b))
    return float((a * np.log2(a / b)).sum()) if len(a) else 0.0


def js_divergence(p: Counter, q: Counter) -> float | None:
    """Jensen-Shannon divergence in bits, in [0, 1]; needs no smoothing, since the mixture covers both. None when
    either has no counts: an empty sample is not identical to the human text (0)."""
    a, b = _aligned(p, q)
    if not a.sum() or not b.sum():
        return None
    a, b = a / a.sum(), b / b.sum()
    m = (a + b) / 2

    def half(x):
        x_, m_ = x[x > 0], m[x > 0]
        return (x_ * np.log2(x_ / m_)).sum()
    return float(max(0.0, (half(a) + half(b)) / 2))


def zipf_slope(counts: Counter) -> float | None:
    """Least-squares slope of log(count) against log(rank) over every type (about -1 for natural text); None below
    two types, where no line is defined."""
    c = np.sort(np.array([v for v in counts.values() if v > 0], dtype=np.float64))[::-1]
    if len(c) < 2:
        return None
    x, y = np.log(np.arange(1, len(c) + 1)), np.log(c)
    return float(np.polyfit(x, y, 1)[0])


def tail_mass(counts: Counter, rare: set) -> float | None:
    """Share of all occurrences whose type is in `rare`; None for no occurrences."""
    total = sum(counts.values())
    return sum(c for w, c in counts.items() if w in rare) / total if total else None



def report(counts: Counter, human: Counter | None = None, rare: set | None = None, alpha: float = 1.0) -> dict:
    """Shape of a fixed-size sample's counts and, given the human counts and rare band, its distance from them."""
    row = {"entropy_1": entropy(counts), "zipf_slope": zipf_slope(counts), "vocab_used": len(counts)}
    if human:
        row["unigram_kl"] = kl_divergence(human, counts, alpha)
        row["unigram_js"] = js_divergence(human, counts)
        row["tail_mass"] = tail_mass(counts, rare) if rare else None  # no rare band: undefined, not "none written"
    return row
