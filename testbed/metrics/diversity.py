"""n-gram diversity on samples of one fixed size.

distinct-n is unique n-grams over all n-grams; it rises as a corpus shrinks,
so comparing corpora of different sizes would show diversity that is not
there. Every corpus is therefore cut to the same number of words first.
"""
import random

from testbed.text import words


def fixed_size_sample(texts: list[str], n_words: int, seed: int) -> list[list[str]]:
    """Documents (as word lists) in a seeded order until exactly n_words words; fewer if the corpus is smaller."""
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    sample, total = [], 0
    for i in order:
        doc = words(texts[i])[: n_words - total]
        if doc:
            sample.append(doc)
            total += len(doc)
        if total >= n_words:
            break
    return sample


def distinct_n(docs: list[list[str]], n: int) -> float:
    """Unique n-grams / total n-grams; n-grams do not cross document boundaries."""
    grams = [tuple(d[i: i + n]) for d in docs for i in range(len(d) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0
