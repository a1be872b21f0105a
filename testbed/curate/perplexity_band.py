"""Perplexity filtering: keep a band of documents ranked by a reference model's likelihood.

Keeping the most likely documents is the usual quality filter, and under
self-training it is also what drives collapse: it cuts the tail first. The
band makes both sides testable: high < 1 drops the least likely documents
(the usual filter), low > 0 drops the most likely ones (the repetitive,
over-confident text a collapsing model writes).
"""
import math

from testbed.metrics.perplexity import document_nll


def mean_token_nll(model, docs: list[list[int]], eos_id: int, batch_size: int = 32, autocast=None) -> list[float]:
    """Nats per predicted token (the document's tokens and its closing EOS)."""
    nll = document_nll(model, docs, eos_id, batch_size, autocast)
    return [total / (len(doc) + 1) for doc, total in zip(docs, nll)]


def round_half_up(x: float) -> int:
    # The epsilon keeps a product such as 0.15 * 3, stored as 0.4499..., at a half.
    return math.floor(x + 0.5 + 1e-9)


def band_keep(scores: list[float], low: float, high: float) -> list[bool]:
    """Keep the documents ranked in the [low, high] share of the pool, most likely (lowest score) first.

    Documents are ranked by score, ties by position (so the result is
    deterministic); ranks round(low * n) to round(high * n) - 1, counting from
    0, are kept, halves rounding up. low=0, high=1 keeps everything; high=0.7
    keeps the 70% most likely; low=0.1 drops the 10% most likely.
    """
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"band_keep needs 0 <= low <= high <= 1, got low={low}, high={high}")
    n = len(scores)
    start, stop = round_half_up(low * n), round_half_up(high * n)
    order = sorted(range(n), key=lambda i: (scores[i], i))
    keep = [False] * n
    for i in order[start:stop]:
        keep[i] = True
    return keep
