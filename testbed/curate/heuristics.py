"""Rule-based filters: cheap checks that drop text no model should train on.

These catch the failure modes of a collapsing model directly: documents that
loop (the same phrase again and again), that never end (the model ran to the
length limit without writing the end-of-document token), that are too short
to carry anything, or that are mostly digits and punctuation.
"""
from dataclasses import dataclass

from testbed import TestbedError
from testbed.curate.step import Step, at_least, positive_or_null, share
from testbed.text import words


@dataclass
class HeuristicsConfig:
    enabled: bool = False
    min_words: int = 0
    max_words: int | None = None
    max_repeat: float = 1.0  # drop a document when more than this share of its word 3-grams are repeats
    max_non_alpha: float = 1.0  # drop when more than this share of its non-space characters are not letters
    require_end: bool = False  # drop documents the model never ended

    def validate(self, cfg) -> None:
        at_least("curate.heuristics.min_words", self.min_words, 0)
        positive_or_null("curate.heuristics.max_words", self.max_words)
        if self.max_words is not None and self.min_words > self.max_words:
            raise TestbedError(f"curate.heuristics.min_words={self.min_words} is above curate.heuristics.max_words="
                               f"{self.max_words}: no document could pass; lower min_words or raise max_words")
        share("curate.heuristics.max_repeat", self.max_repeat)
        share("curate.heuristics.max_non_alpha", self.max_non_alpha)


def non_alpha_share(text: str) -> float:
    """Share of non-whitespace characters that are not letters; 1.0 for a text with none (nothing to keep)."""
    chars = [c for c in text if not c.isspace()]
    return sum(not c.isalpha() for c in chars) / len(chars) if chars else 1.0


def heuristic_keep(texts: list[str], ended: list[bool], *, min_words: int = 0, max_words: int | None = None,
                   max_repeat: float = 1.0, max_non_alpha: float = 1.0, require_end: bool = False) -> list[bool]:
    """keep[i]: document i passes every threshold (the defaults keep everything).

    ended[i]: the model wrote the end-of-document token (Sample.ended); human text counts as ended.
    """
    from testbed.metrics.degeneration import repeated_ngram_share
    if len(texts) != len(ended):
        raise ValueError(f"{len(texts)} texts but {len(ended)} ended flags")
    keep = []
    for text, end in zip(texts, ended):
        w = words(text)
        keep.append(
            len(w) >= min_words
            and (max_words is None or len(w) <= max_words)
            and repeated_ngram_share(w, 3) <= max_repeat
            and non_alpha_share(text) <= max_non_alpha
            and (end or not require_end))
    return keep


class Heuristics(Step):
    name = section = "heuristics"
    Config = HeuristicsConfig

    def keep(self, g, pool, newest):
        c = self.c
        return heuristic_keep([d.text for _, d in pool], [d.ended for _, d in pool], min_words=c.min_words,
                              max_words=c.max_words, max_repeat=c.max_repeat, max_non_alpha=c.max_non_alpha,
                              require_end=c.require_end), {}
