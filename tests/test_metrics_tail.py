from collections import Counter

import pytest

from testbed.metrics.tail import (Human, band, band_recall, bands, count_ids, head_min_count, mass_recall, ngrams,
                                  rare_threshold, rare_types, recall, report, word_counts)


def test_ngrams_and_counts():
    assert ngrams(["a", "b", "c"], 1) == ["a", "b", "c"]
    assert ngrams(["a", "b", "c"], 2) == [("a", "b"), ("b", "c")]
    assert word_counts([["a", "b"], ["a", "b", "a"]], 2) == Counter({("a", "b"): 2, ("b", "a"): 1})


def test_rare_threshold_by_share_or_quantile():
    counts = Counter(a=10, b=5, c=1, d=1, e=2)  # 19 occurrences
    assert rare_threshold(counts, 0.16) == 3  # floor(3.04)
    # sorted counts 1 1 2 5 10: the 40% quantile is the 2nd, count 1; 50% rounds up to the 3rd, count 2
    assert rare_threshold(counts, 0.16, quantile=0.4) == 1
    assert rare_threshold(counts, 0.16, quantile=0.5) == 2
    assert rare_types(counts, rare_threshold(counts, 0.16, 0.5)) == {"c", "d", "e"}


def test_the_same_share_transfers_across_corpus_sizes():
    counts = Counter(once=1, twice=2, thrice=3, fifty=50, filler=9944)  # 10,000 words
    assert rare_threshold(counts, 2e-4) == 2
    docs = [[w for w, c in counts.items() for _ in range(c)]]
    assert Human(docs, 2e-4).rare == {"once", "twice"}
    bigger = Counter({w: 10 * c for w, c in counts.items()})  # 100,000 words: the same rule asks for 20
    assert rare_threshold(bigger, 2e-4) == 20
    assert rare_types(bigger, rare_threshold(bigger, 2e-4)) == {"once", "twice"}
    assert rare_threshold(counts, 3e-4) == 3  # 3e-4 * 10,000 is 2.9999999999999996 in floats


def test_a_corpus_too_small_for_the_share_has_an_empty_rare_band():
    h = Human([["the", "cat", "sat", "on", "the", "mat"]], 5e-5)  # 5e-5 of 6 words: no count qualifies
    assert rare_threshold(h.counts, 5e-5) == 0 and h.rare == set() and h.rare_bigrams == set()
    assert "rare" not in h.band_of.values()
    row = report(h, [["the", "cat"]])  # undefined, not a tail the sample lost
    assert row["rare_token_recall"] is None and row["rare_mass_recall"] is None and row["rare_bigram_recall"] is None
    assert row["recall_by_band"]["rare"] is None and row["recall_by_band"]["common"] == pytest.approx(2 / 5)


def test_head_and_bands():
    counts = Counter(a=10, b=5, c=3, d=1, e=1)  # 20 occurrences
    assert head_min_count(counts, 0.5) == 10  # a alone covers half
    assert head_min_count(counts, 0.6) == 5  # a + b = 15 >= 12
    exact = Counter(a=55, **{f"w{i}": 1 for i in range(45)})  # a covers 55 of 100; 0.55 * 100 is 55.00000000000001
    assert head_min_count(exact, 0.55) == 55
    assert rare_threshold(Counter({f"w{i}": i for i in range(1, 101)}), 5e-5, quantile=0.55) == 55  # the 55th of 100
    assert bands(counts, 1, 5) == {"a": "common", "b": "common", "c": "middle", "d": "rare", "e": "rare"}
    assert band(0, 1, 5) == "rare"  # never seen: rarer than rare


def test_recall_mass_recall_and_band_recall():
    counts = Counter(a=10, b=5, c=3, d=1, e=2)
    rare = {"c", "d", "e"}
    present = {"a", "d", "e", "zz"}
    assert recall(rare, [["a", "d"], ["e", "zz"]]) == pytest.approx(2 / 3)
    assert mass_recall(rare, counts, present) == pytest.approx((1 + 2) / (3 + 1 + 2))
    by_band = band_recall(bands(counts, 3, 10), present)
    assert by_band == {"rare": pytest.approx(2 / 3), "middle": 0.0, "common": 1.0}  # middle: b
    assert band_recall(bands(counts, 3, 5), present)["middle"] is None  # no count between 3 and 5: no middle band


def test_bigram_recall():
    rare = {("a", "b"), ("c", "d")}
    assert recall(rare, [["a", "b", "c"], ["d"]], n=2) == pytest.approx(1 / 2)  # (c, d) crosses a document boundary


def test_dropping_every_rare_token_drives_recall_to_zero():
    human = [("the cat sat on the mat the end " * 5 + "zebra quokka the narwhal sat").split()]
    bands_ = Human(human, max_freq=0.03)  # of 45 words (44 bigrams): a threshold of count 1
    assert bands_.rare == {"zebra", "quokka", "narwhal"}
    sample = [human[0]]
    full = report(bands_, sample)
    assert full["rare_token_recall"] == 1.0 and full["rare_mass_recall"] == 1.0 and full["rare_bigram_recall"] == 1.0
    dropped = [[w for w in human[0] if w not in bands_.rare]]
    row = report(bands_, dropped)
    assert row["rare_token_recall"] == 0.0 and row["rare_mass_recall"] == 0.0
    assert row["recall_by_band"]["rare"] == 0.0 and row["recall_by_band"]["common"] == 1.0
    assert row["rare_bigram_recall"] < full["rare_bigram_recall"]


def test_human_bands_with_a_quantile():
    docs = [["a"] * 6 + ["b"] * 3 + ["c", "c", "d"]]  # 12 words: a 6, b 3, c 2, d 1
    h = Human(docs, max_freq=5e-5, quantile=0.5, common_mass=0.5)
    assert h.rare == {"c", "d"}  # the lower half of 4 types: counts <= 2
    assert h.band_of == {"a": "common", "b": "middle", "c": "rare", "d": "rare"}
    assert report(h, [["a", "b", "d"]])["recall_by_band"] == {"rare": 0.5, "middle": 1.0, "common": 1.0}


def test_human_counts_a_generator_as_the_list():
    docs = [["the", "cat", "sat"], ["the", "dog"], [], ["a", "cat", "sat", "on", "the", "mat"]]
    a, b = Human(docs, 0.2), Human((d for d in docs), 0.2)  # rare: at most 2 of 11 words, 1 of 8 bigrams
    assert (a.counts, a.rare, a.band_of, a.rare_bigrams) == (b.counts, b.rare, b.band_of, b.rare_bigrams)
    assert a.counts == word_counts(docs) and a.rare == {"cat", "sat", "dog", "a", "on", "mat"}
    assert a.rare_bigrams == {("the", "cat"), ("the", "dog"), ("a", "cat"), ("sat", "on"), ("on", "the"), ("the", "mat")}


def test_count_ids_over_lists_and_batches(as_ids):
    docs = [[3, 1, 3], [], [0], [4, 4, 4, 4]]
    expected = [1, 1, 0, 2, 4, 0]
    assert count_ids(docs, 6).tolist() == expected
    assert count_ids(as_ids(docs), 6, batch=1).tolist() == expected  # views, a document at a time
