import math
import random

import pytest

from testbed.metrics.diversity import (compression_ratio, distinct_n, fixed_size_sample, ngram_entropy, report,
                                       self_bleu, sentence_bleu)


def test_sentence_bleu_hand_computed():
    hyp, ref = "a b c d".split(), "a b c e".split()
    # precisions 3/4, 2/3, 1/2; no 4-gram matches: exponential smoothing gives 1 / (2 * 1)
    expected = math.exp((math.log(3 / 4) + math.log(2 / 3) + math.log(1 / 2) + math.log(1 / 2)) / 4)
    assert sentence_bleu(hyp, ref) == pytest.approx(expected)


def test_sentence_bleu_brevity_and_effective_order():
    # "a b" against "a b c d": 2-word hypothesis, orders 1-2 only, both perfect; brevity exp(1 - 4/2)
    assert sentence_bleu(["a", "b"], "a b c d".split()) == pytest.approx(math.exp(-1))
    assert sentence_bleu("a b".split(), "a b".split()) == pytest.approx(1.0)
    assert sentence_bleu(["x", "y"], ["a", "b"]) == 0.0
    assert sentence_bleu([], ["a"]) == 0.0


def test_sentence_bleu_matches_sacrebleu():
    # sentence_bleu calls sacrebleu on words: this pins its settings to sacrebleu's own sentence BLEU
    # (exponential smoothing, effective order) on text split only at spaces.
    import sacrebleu
    rng = random.Random(0)
    lexicon = "the a cat dog sat ran on mat far away happy sad".split()
    for _ in range(200):
        hyp = rng.choices(lexicon, k=rng.randint(1, 15))
        ref = rng.choices(lexicon, k=rng.randint(1, 15))
        expected = sacrebleu.sentence_bleu(" ".join(hyp), [" ".join(ref)], tokenize="none").score / 100
        assert sentence_bleu(hyp, ref) == pytest.approx(expected, abs=1e-9), (hyp, ref)


VARIED = [f"w{i} w{i + 1} w{i + 2} w{(i * 7) % 50} w{(i * 3) % 40} w{i % 9}".split() for i in range(60)]
COPIES = ["the cat sat on the mat".split()] * 60


def test_copies_are_less_diverse_than_varied_text():
    for n in (1, 2, 3, 4):
        assert distinct_n(COPIES, n) < distinct_n(VARIED, n)
    assert self_bleu(COPIES, 50, seed=0) == pytest.approx(1.0)
    assert self_bleu(COPIES, 50, seed=0) > self_bleu(VARIED, 50, seed=0)
    assert compression_ratio(COPIES) > compression_ratio(VARIED)
    assert ngram_entropy(COPIES, 2) == pytest.approx(math.log2(5))  # 5 bigrams, equally often


def test_self_bleu_averages_seeded_pairs():
    docs = ["a b c".split(), "a b c".split(), "x y z".split()]
    # pairs of distinct documents: BLEU 1 for (0, 1) and (1, 0), 0 for any pair with document 2
    rng = random.Random(4)
    pairs = [rng.sample(range(3), 2) for _ in range(30)]
    expected = sum(set(p) == {0, 1} for p in pairs) / 30
    assert self_bleu(docs, 30, seed=4) == pytest.approx(expected)
    assert self_bleu(docs[:1], 30, seed=4) is None  # one document has no pair: not "pairs share nothing" (0)


def test_ngram_entropy_hand_computed():
    docs = [["a", "a", "b", "c"]]
    # unigrams a: 1/2, b: 1/4, c: 1/4 -> 1.5 bits; bigrams aa ab bc, uniform -> log2 3
    assert ngram_entropy(docs, 1) == pytest.approx(1.5)
    assert ngram_entropy(docs, 2) == pytest.approx(math.log2(3))
    assert ngram_entropy([], 2) is None


def test_compression_ratio_is_raw_over_zlib_bytes():
    import zlib

    docs = [["ab", "ab"], ["cd"]]
    raw = b"ab ab\ncd"
    assert compression_ratio(docs) == pytest.approx(len(raw) / len(zlib.compress(raw, 9)))
    assert compression_ratio([]) is None and compression_ratio([[], []]) is None


def test_distinct_4():
    assert distinct_n([["a", "b", "a", "b", "a"]], 4) == pytest.approx(2 / 2)
    assert distinct_n([["a", "b", "a", "b", "a", "b"]], 4) == pytest.approx(2 / 3)  # abab baba abab


def test_report_keys_and_ids():
    row = report([["a", "b", "a", "b"]], pairs=5, seed=0)
    assert set(row) == {"distinct_1", "distinct_2", "distinct_3", "distinct_4", "entropy_2", "entropy_3",
                        "self_bleu", "compression_ratio"}
    # token ids split like words: the same sampler cuts id lists to a fixed number of tokens
    ids = fixed_size_sample([[1, 2, 3], [4, 5], [6]], 4, seed=0, split=list)
    assert sum(map(len, ids)) == 4
