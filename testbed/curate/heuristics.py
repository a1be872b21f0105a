"""Rule-based filters: cheap checks that drop text no model should train on.

These catch the failure modes of a collapsing model directly: documents that
loop (the same phrase again and again), that never end (the model ran to the
length limit without writing the end-of-document token), that are too short
to carry anything, or that are mostly digits and punctuation.
"""
from testbed.metrics.degeneration import repeated_ngram_share
from testbed.text import words


def non_alpha_share(text: str) -> float:
    """Share of non-whitespace characters that are not letters; 1.0 for a text with none (nothing to keep)."""
    chars = [c for c in text if not c.isspace()]
    return sum(not c.isalpha() for c in chars) / len(chars) if chars else 1.0


def heuristic_keep(texts: list[str], ended: list[bool], *, min_words: int = 0, max_words: int | None = None,
                   max_repeat: float = 1.0, max_non_alpha: float = 1.0, require_end: bool = False) -> list[bool]:
    """keep[i]: document i passes every threshold (the defaults keep everything).

    ended[i]: the model wrote the end-of-document token (Sample.ended); human text counts as ended.
    """
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
