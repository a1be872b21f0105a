import pytest

from testbed.metrics.degeneration import has_loop, length_quantiles, loop_rate, repeated_ngram_share


def test_repeated_ngram_share():
    # trigrams: abc bca cab abc -> 1 of 4 repeats an earlier one
    assert repeated_ngram_share("a b c a b c".split()) == pytest.approx(1 / 4)
    assert repeated_ngram_share(["a", "b"]) == 0.0


@pytest.mark.parametrize("text, loops", [
    ("the dog ran . the dog ran . the dog ran .", True),  # a 4-word phrase, 3 copies back to back
    ("she said yes she said yes she said yes and left", True),
    ("she said yes she said yes and she left", False),  # only 2 copies
    ("it was very very very big", False),  # 3 copies of one word span 3 < 6 words: emphasis
    ("no no no no no no", True),  # 6 copies of one word span 6 words
    ("a b c d e f g h i j k a b c d e f g h i j k a b c d e f g h i j k", False),  # period 11 > max_period 10
    ("", False),
])
def test_has_loop(text, loops):
    assert has_loop(text.split()) is loops


def test_loop_rate_and_length_quantiles():
    docs = ["a b a b a b".split(), "one two three four".split(), [], "x y z".split()]
    assert loop_rate(docs) == pytest.approx(1 / 4)
    assert loop_rate([]) is None  # no documents: not "none loops" (0)
    # 1..10: numpy's linear interpolation puts p10 at 1.9, p50 at 5.5, p90 at 9.1
    assert length_quantiles(list(range(1, 11))) == {"p10": pytest.approx(1.9), "p50": 5.5, "p90": pytest.approx(9.1)}
    assert length_quantiles([]) == {"p10": 0.0, "p50": 0.0, "p90": 0.0}
