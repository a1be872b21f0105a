"""n-gram diversity on samples of one fixed size.

distinct-n is unique n-grams over all n-grams; it rises as a corpus shrinks,
so comparing corpora of different sizes would show diversity that is not
there. Every corpus is therefore cut to the same number of words first, and
every figure here is computed on that sample.
"""
import functools
import random
import zlib

from testbed.metrics.shape import entropy
from testbed.metrics.tail import ngrams, word_counts
from testbed.text import words


def fixed_size_sample(texts: list, n_words: int, seed: int, split=words) -> list[list]:
    """Documents split into units (words by default) in a seeded order until exactly n_words units.

    Fewer when the corpus is smaller. A document cut at the limit keeps its start.
    """
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    sample, total = [], 0
    for i in order:
        doc = split(texts[i])[: n_words - total]
        if doc:
            sample.append(doc)
            total += len(doc)
        if total >= n_words:
            break
    return sample


def distinct_n(docs: list[list], n: int) -> float | None:
    """Unique n-grams / total n-grams; n-grams do not cross document boundaries. None without any n-gram."""
    grams = [g for d in docs for g in ngrams(d, n)]
    return len(set(grams)) / len(grams) if grams else None


def ngram_entropy(docs: list[list], n: int) -> float | None:
    """Entropy (bits) of the sample's n-gram distribution; None without any n-gram."""
    return entropy(word_counts(docs, n))


def compression_ratio(docs: list[list[str]]) -> float | None:
    """Bytes of the sample (words joined by spaces, documents by newlines) over its zlib-9 size: higher, more redundant.
    None for a sample without words."""
    raw = "\n".join(" ".join(d) for d in docs).encode("utf-8")
    return len(raw) / len(zlib.compress(raw, 9)) if any(docs) else None


def sentence_bleu(hyp: list[str], ref: list[str]) -> float:
    """BLEU of one hypothesis against one reference, in [0, 1]: sacrebleu's sentence BLEU on pre-tokenized text.

    That is exponential smoothing (each n-gram order with no match counts as
    1 / (2^k * total)) and the effective order (orders the hypothesis is too
    short to have are left out).
    """
    return _bleu().sentence_score(" ".join(hyp), [" ".join(ref)]).score / 100


@functools.cache
def _bleu():
    from sacrebleu.metrics import BLEU
    return BLEU(tokenize="none", smooth_method="exp", effective_order=True)


def self_bleu(docs: list[list[str]], pairs: int, seed: int) -> float | None:
    """Mean sentence BLEU over a seeded sample of ordered (hypothesis, reference) pairs of distinct documents.

    Pairs rather than each document against all others: the cost is fixed
    however large the sample, and the estimate's spread shrinks as 1/sqrt(pairs). None below two documents: a
    sample of one has no pair, which is not the same as pairs that share nothing (0).
    """
    if len(docs) < 2 or pairs < 1:
        return None
    rng = random.Random(seed)
    total = 0.0
    for _ in range(pairs):
        i, j = rng.sample(range(len(docs)), 2)
        total += sentence_bleu(docs[i], docs[j])
    return total / pairs


def report(sample: list[list[str]], pairs: int, seed: int) -> dict:
    """Every diversity figure of a fixed-size word sample (entropy_1 is the shape family's)."""
    row = {f"distinct_{n}": distinct_n(sample, n) for n in (1, 2, 3, 4)}
    row.update({f"entropy_{n}": ngram_entropy(sample, n) for n in (2, 3)})
    row["self_bleu"] = self_bleu(sample, pairs, seed)
    row["compression_ratio"] = compression_ratio(sample)
    return row
