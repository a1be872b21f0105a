"""Perplexity filtering: keep a band of documents ranked by a reference model's likelihood.

Keeping the most likely documents is the usual quality filter, and under
self-training it is also what drives collapse: it cuts the tail first. The
band makes both sides testable: high < 1 drops the least likely documents
(the usual filter), low > 0 drops the most likely ones (the repetitive,
over-confident text a collapsing model writes).
"""
import math
from dataclasses import dataclass
from typing import Literal

from testbed import TestbedError, gen_name
from testbed.curate.step import Step, share


@dataclass
class PerplexityConfig:
    enabled: bool = False
    reference: Literal["first", "previous"] = "first"  # score with generation 0's model, or the one that wrote the text
    # Keep documents whose per-token NLL ranks in [low, high] (0 = most likely):
    # high=0.7 drops the 30% least likely, the usual "quality" filter.
    low: float = 0.0
    high: float = 1.0

    def validate(self, cfg) -> None:
        share("curate.perplexity.low", self.low)
        share("curate.perplexity.high", self.high)
        if self.low >= self.high:
            raise TestbedError(f"curate.perplexity.low={self.low} must be below curate.perplexity.high={self.high}")


def mean_token_nll(model, docs: list[list[int]], eos_id: int, batch_size: int = 32, autocast=None) -> list[float]:
    """Nats per predicted token (the document's tokens and its closing EOS)."""
    from testbed.metrics.perplexity import document_nll
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


class Perplexity(Step):
    name = section = "perplexity"
    Config = PerplexityConfig

    def keep(self, g, pool, newest):
        c, cur = self.c, self.curator
        reference = 0 if c.reference == "first" else g - 1
        nll = mean_token_nll(cur.model(reference), [d.ids for _, d in pool], cur.eos, cur.cfg.eval.batch_size,
                             cur.autocast)
        return band_keep(nll, c.low, c.high), {"reference": gen_name(reference)}
