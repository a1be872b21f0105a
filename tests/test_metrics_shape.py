import math
from collections import Counter

import pytest

from testbed.metrics.shape import entropy, js_divergence, kl_divergence, report, tail_mass, zipf_slope


def test_entropy_hand_computed():
    assert entropy(Counter(a=2, b=1, c=1)) == pytest.approx(1.5)
    assert entropy(Counter(a=5)) == 0.0
    assert entropy(Counter()) is None


def test_kl_of_a_distribution_to_itself_is_zero():
    p = Counter(the=50, cat=7, sat=3, zebra=1)
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    assert kl_divergence(p, Counter({k: 3 * v for k, v in p.items()}), alpha=0.0) == pytest.approx(0.0, abs=1e-12)
    assert js_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    # An empty sample is not identical to the human text: the distances are undefined, and so is its tail mass.
    assert js_divergence(p, Counter()) is None and kl_divergence(p, Counter()) is None
    assert tail_mass(Counter(), {"zebra"}) is None


def test_kl_hand_computed_with_add_alpha_smoothing():
    p, q = Counter(a=3, b=1), Counter(a=2)
    # union {a, b}, alpha 1: p -> (4/6, 2/6), q -> (3/4, 1/4)
    expected = 4 / 6 * math.log2((4 / 6) / (3 / 4)) + 2 / 6 * math.log2((2 / 6) / (1 / 4))
    assert kl_divergence(p, q, alpha=1.0) == pytest.approx(expected)
    # without smoothing a type q lacks makes it infinite; with it, the value grows as q's tail thins
    assert kl_divergence(p, Counter(a=2, b=1)) < kl_divergence(p, q)


def test_js_hand_computed_symmetric_and_bounded():
    p, q = Counter(a=1, b=1), Counter(a=1)
    # m = (3/4, 1/4): KL(p||m) = 1/2 log2(2/3) + 1/2 log2 2, KL(q||m) = log2(4/3)
    expected = ((0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)) + math.log2(1 / 0.75)) / 2
    assert js_divergence(p, q) == pytest.approx(expected)
    assert js_divergence(q, p) == pytest.approx(expected)
    assert js_divergence(Counter(a=4), Counter(b=9)) == pytest.approx(1.0)  # disjoint: the maximum, 1 bit


def test_zipf_slope_of_an_exact_power_law():
    assert zipf_slope(Counter({f"w{r}": 360 // r for r in range(1, 7)})) == pytest.approx(-1.0)  # 360/r
    assert zipf_slope(Counter({f"w{r}": 3600 // r ** 2 for r in range(1, 7)})) == pytest.approx(-2.0)
    assert zipf_slope(Counter(a=3)) is None  # one type: no line


def test_tail_mass_and_report():
    counts = Counter(the=6, zebra=1, quokka=1)
    assert tail_mass(counts, {"zebra", "quokka", "never"}) == pytest.approx(2 / 8)
    row = report(counts)
    assert row == {"entropy_1": pytest.approx(entropy(counts)), "zipf_slope": pytest.approx(zipf_slope(counts)),
                   "vocab_used": 3}
    full = report(counts, Counter(the=6, zebra=1, quokka=1), {"zebra"})
    assert full["unigram_kl"] == pytest.approx(0.0, abs=1e-12) and full["tail_mass"] == pytest.approx(1 / 8)
    assert report(counts, Counter(the=6), {"never"})["tail_mass"] == 0.0  # a rare band none of whose words was written
    assert report(counts, Counter(the=6), set())["tail_mass"] is None  # no rare band: undefined


def test_divergences_do_not_depend_on_the_hash_seed():
    """The README promises bit-for-bit results: no figure may change with PYTHONHASHSEED."""
    import os
    import subprocess
    import sys

    code = ("import random; from collections import Counter; from testbed.metrics.shape import kl_divergence, js_divergence;"
            "r = random.Random(0); words = [f'w{i}' for i in range(3000)];"
            "p = Counter(r.choices(words, k=20000)); q = Counter(r.choices(words, k=20000));"
            "print(repr(kl_divergence(p, q)), repr(js_divergence(p, q)))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in range(8)}
    assert len(outs) == 1, outs
