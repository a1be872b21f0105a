"""Degeneration: documents that loop or never end, and how long documents are.

A repetition loop is the failure mode of a model that has grown too
confident: the same phrase again and again. It is measured on words, as
the share of a document's word n-grams that repeat an earlier one, and as
the presence of a phrase repeated back to back.
"""
import numpy as np


def repeated_ngram_share(doc: list[str], n: int = 3) -> float:
    """Share of the document's word n-grams that already occurred earlier in it (0 for fewer than n words)."""
    grams = [tuple(doc[i: i + n]) for i in range(len(doc) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def has_loop(doc: list, copies: int = 3, max_period: int = 10, min_words: int = 6) -> bool:
    """Does some phrase of 1..max_period words occur `copies` times back to back, spanning at least min_words words?

    min_words keeps emphasis such as "very very very" from counting as a loop.
    """
    for p in range(1, max_period + 1):
        need = max(copies * p, min_words) - p  # positions i with doc[i] == doc[i + p] in a row
        run = 0
        for a, b in zip(doc, doc[p:]):
            run = run + 1 if a == b else 0
            if run >= need:
                return True
    return False


def loop_rate(docs: list[list]) -> float | None:
    """Share of documents with a repetition loop; None for no documents."""
    return sum(map(has_loop, docs)) / len(docs) if docs else None


def length_quantiles(lengths: list[int], qs=(10, 50, 90)) -> dict:
    """Percentiles of document length (linear interpolation, as numpy's default)."""
    if not lengths:
        return {f"p{q}": 0.0 for q in qs}
    return {f"p{q}": float(v) for q, v in zip(qs, np.percentile(lengths, qs))}
