"""Deduplication: exact copies, then near-copies.

A collapsing model repeats itself across documents, not only inside one:
the same likely story written again, sometimes word for word, more often
with a word or two changed. Duplicates weight training towards what is
already most likely, which is the direction collapse goes.
"""
import hashlib
import re
from dataclasses import dataclass

from testbed import TestbedError
from testbed.curate.step import Step, at_least, share
from testbed.text import words

_SPACE = re.compile(r"\s+")


@dataclass
class DedupConfig:
    exact: bool = False  # same text after folding case and whitespace
    near: bool = False  # MinHash/LSH over word shingles (datasketch)
    threshold: float = 0.8  # estimated Jaccard similarity at which a later document is a near-duplicate
    num_perm: int = 128
    shingle: int = 5

    def validate(self, cfg) -> None:
        at_least("curate.dedup.num_perm", self.num_perm, 16)
        at_least("curate.dedup.shingle", self.shingle, 1)
        share("curate.dedup.threshold", self.threshold)


def exact_keep(texts: list[str]) -> list[bool]:
    """Keep the first copy of each text; case and runs of whitespace do not make a copy distinct."""
    seen, keep = set(), []
    for text in texts:
        key = hashlib.blake2b(_SPACE.sub(" ", text.strip().lower()).encode("utf-8"), digest_size=16).digest()
        keep.append(key not in seen)
        seen.add(key)
    return keep


def shingles(text: str, n: int) -> set[bytes]:
    """Word n-grams; a document shorter than n words is one shingle of all its words."""
    w = words(text)
    grams = [w[i: i + n] for i in range(len(w) - n + 1)] or [w]
    return {" ".join(g).encode("utf-8") for g in grams}


def near_keep(texts: list[str], *, threshold: float = 0.8, num_perm: int = 128, shingle: int = 5,
              seed: int = 0) -> list[bool]:
    """Keep a document unless an earlier kept one has estimated Jaccard similarity >= threshold.

    LSH only proposes candidates, and every candidate is checked against the
    MinHash estimate before a document is dropped, so a false candidate costs
    one comparison while a missed one lets a duplicate through. The banding is
    therefore tuned against misses: with datasketch's default equal weights,
    about one near-copy in ten at Jaccard 0.89 was never proposed (threshold
    0.8, 128 permutations). Documents are scanned in order, so the first copy is kept.
    """
    from datasketch import MinHash, MinHashLSH
    sketches = MinHash.bulk((shingles(t, shingle) for t in texts), num_perm=num_perm, seed=seed)
    try:
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.05, 0.95))
    except ValueError as e:  # e.g. a threshold near 1 leaves fewer than 2 bands
        raise TestbedError(f"curate.dedup.threshold={threshold} with curate.dedup.num_perm={num_perm}: {e}; "
                           "lower the threshold or raise num_perm") from None
    keep = []
    for i, m in enumerate(sketches):
        dup = any(sketches[j].jaccard(m) >= threshold for j in lsh.query(m))
        if not dup:
            lsh.insert(i, m, check_duplication=False)
        keep.append(not dup)
    return keep


class Exact(Step):
    name, section = "dedup_exact", "dedup"
    Config = DedupConfig

    @staticmethod
    def enabled(c):
        return c.exact

    def keep(self, g, pool, newest):
        return exact_keep([d.text for _, d in pool]), {}


class Near(Step):
    name, section = "dedup_near", "dedup"
    Config = DedupConfig

    @staticmethod
    def enabled(c):
        return c.near

    def __init__(self, c, curator):
        super().__init__(c, curator)
        near_keep([], threshold=c.threshold, num_perm=c.num_perm)  # a threshold datasketch cannot band fails here

    def keep(self, g, pool, newest):
        c = self.c
        return near_keep([d.text for _, d in pool], threshold=c.threshold, num_perm=c.num_perm, shingle=c.shingle,
                         seed=self.curator.seed(g, "dedup")), {}
