"""Degeneration: documents that loop or never end.

A repetition loop is the failure mode of a model that has grown too
confident: the same phrase again and again. It is measured on words, as
the share of a document's word n-grams that repeat an earlier one.
"""


def repeated_ngram_share(doc: list[str], n: int = 3) -> float:
    """Share of the document's word n-grams that already occurred earlier in it (0 for fewer than n words)."""
    grams = [tuple(doc[i: i + n]) for i in range(len(doc) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0
