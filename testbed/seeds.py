"""Every stage's seed, from (run seed, generation, stage).

A run resumed after a kill then computes exactly what an uninterrupted run
would have, and the report can redraw the samples the metrics were taken on.
"""
import hashlib


def stage_seed(seed: int, generation: int, stage: str) -> int:
    digest = hashlib.sha256(f"{seed}:{generation}:{stage}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


# Stages read in more than one file: the report redraws the corpus and the metrics' word samples with them, and a
# name spelt differently in one place would silently draw other samples.
def corpus_seed(seed: int) -> int:
    """The human corpus's own draw (storyworld's stories, a local file's shuffle)."""
    return stage_seed(seed, 0, "corpus")


def eval_seed(seed: int) -> int:
    """The word samples every generation's metrics count, the same in every generation."""
    return stage_seed(seed, 0, "eval")
