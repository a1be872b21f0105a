"""Rare-token recall: how much of the human tail a model still writes.

Rare is defined on the human training split: types seen at least once and at
most a threshold number of times, the threshold a share of all occurrences
(the same relative frequency on every corpus, so bands compare across corpora
of any size) or a quantile of the types' counts. The same definitions serve
words (the headline, see testbed.text), word bigrams (collapse loses rare
combinations before rare words) and tokenizer ids.
"""
import math
from collections import Counter

import numpy as np

BANDS = ("rare", "middle", "common")


def ngrams(doc: list, n: int) -> list:
    """The document's n-grams; for n = 1 the items themselves, so word types stay plain strings."""
    return list(doc) if n == 1 else list(zip(*(doc[i:] for i in range(n))))


def word_counts(docs: list[list], n: int = 1) -> Counter:
    """n-gram counts over documents; n-grams do not cross document boundaries."""
    counts = Counter()
    for d in docs:
        counts.update(ngrams(d, n))
    return counts


def count_ids(docs, size: int, batch: int = 4096) -> np.ndarray:
    """How often each token id below `size` occurs in the documents (lists, or views of a corpus's ids);
    a batch of documents at a time, so a corpus of millions is never copied whole."""
    counts = np.zeros(size, np.int64)
    for start in range(0, len(docs), batch):
        counts += np.bincount(np.concatenate([np.asarray(d, np.int64) for d in docs[start:start + batch]]), minlength=size)
    return counts


def rare_threshold(counts: Counter, max_freq: float, quantile: float | None = None) -> int:
    """The count at or below which a type is rare: floor(max_freq * all occurrences), or the count at
    `quantile` of the sorted type counts. 0 (an empty rare band) where the counts are too few for any to qualify."""
    if quantile is None:
        # Rounded first so that float noise (3e-4 * 10_000 = 2.9999999999999996) cannot lose a whole count.
        return math.floor(round(max_freq * sum(counts.values()), 6))
    ordered = sorted(c for c in counts.values() if c > 0)
    return ordered[max(0, math.ceil(round(quantile * len(ordered), 6)) - 1)] if ordered else 0  # rounded as above


def rare_types(counts: Counter, max_count: int) -> set:
    """Types occurring at least once and at most max_count times."""
    return {w for w, c in counts.items() if 0 < c <= max_count}


def head_min_count(counts: Counter, mass: float = 0.5) -> int:
    """The smallest count among the most frequent types that together cover `mass` of all occurrences."""
    total, covered = sum(counts.values()), 0
    for c in sorted(counts.values(), reverse=True):
        covered += c
        if covered >= round(mass * total, 6):  # rounded: 0.55 * 100 is 55.00000000000001, which 55 would miss
            return c
    return 0


def band(count: int, rare_max: int, common_min: int) -> str:
    # Rare wins a tie with common: it only happens on corpora too small to have a middle.
    return "rare" if count <= rare_max else "common" if count >= common_min else "middle"


def bands(counts: Counter, rare_max: int, common_min: int) -> dict:
    """Each type seen in the counts -> its frequency band."""
    return {w: band(c, rare_max, common_min) for w, c in counts.items() if c > 0}


def seen(sample: list[list], n: int = 1) -> set:
    return {g for d in sample for g in ngrams(d, n)}


def recall(rare: set, sample: list[list], n: int = 1) -> float | None:
    """Share of the rare types (n-grams) that appear at least once in the sample; None (undefined, not a loss)
    for an empty rare band."""
    if not rare:
        return None
    return len(rare & seen(sample, n)) / len(rare)


def mass_recall(rare: set, counts: Counter, present: set) -> float | None:
    """Recall weighted by human frequency: the share of the rare band's human occurrences whose type is present;
    None for an empty rare band."""
    total = sum(counts[w] for w in rare)
    return sum(counts[w] for w in rare & present) / total if total else None


def band_recall(band_of: dict, present: set) -> dict:
    """Per band, the share of its types present; None for a band with no types (a corpus too small to have a
    middle, or a rare band)."""
    sizes, hits = Counter(band_of.values()), Counter(b for w, b in band_of.items() if w in present)
    return {b: hits[b] / sizes[b] if sizes[b] else None for b in BANDS}


class Human:
    """The human training split's rare types and frequency bands, over words and word bigrams."""

    def __init__(self, docs, max_freq: float, quantile: float | None = None, common_mass: float = 0.5):
        """docs: each document's words, in any iterable: counted in one pass, so a generator's
        documents are never held all at once."""
        self.counts, bigrams = Counter(), Counter()
        for d in docs:
            self.counts.update(d)
            bigrams.update(ngrams(d, 2))
        rare_max = rare_threshold(self.counts, max_freq, quantile)
        self.rare = rare_types(self.counts, rare_max)
        self.band_of = bands(self.counts, rare_max, head_min_count(self.counts, common_mass))
        self.rare_bigrams = rare_types(bigrams, rare_threshold(bigrams, max_freq, quantile))


def report(human: Human, sample: list[list[str]]) -> dict:
    """Recall of the human tail by a fixed-size word sample."""
    present = seen(sample)
    return {
        "rare_token_recall": len(human.rare & present) / len(human.rare) if human.rare else None,
        "rare_mass_recall": mass_recall(human.rare, human.counts, present),
        "recall_by_band": band_recall(human.band_of, present),
        "rare_bigram_recall": recall(human.rare_bigrams, sample, 2),
    }
