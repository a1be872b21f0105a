"""storyworld: exact probabilities, unambiguity, the validator, and agreement with sampling.

Statistical checks compare a sample of stories with the exact values at 5 standard
errors. Stories are independent but the words inside one story are not, so the
standard errors are computed over stories (ratio estimator, delta method), not
as if words were independent draws.
"""
import math
import random

import numpy as np
import pytest

from testbed.corpus.storyworld import (
    DEFAULT_RARE_MAX_PROB, Bind, Choice, Lit, Ref, Seq, StoryWorld, Word, render, tokenize)
from testbed.text import words

N_STAT = 5000  # stories for the statistical checks


@pytest.fixture(scope="module")
def sw():
    return StoryWorld()


@pytest.fixture(scope="module")
def big(sw):
    return sw.sample_with_logprob(N_STAT, 12345)


def owner_of(sw):
    """word -> class name, over every class the grammar uses."""
    owner = {}
    for n in sw.g.nodes:
        cls = getattr(n, "cls", n)
        if isinstance(cls, Word):
            for w in cls.words:
                owner[w] = cls.name
    return owner


# --- an independent parser: tries every alternative, no lookahead tables ------

def _derivations(node, toks, pos, env):
    """Yield (end, env, logp) for every way `node` can derive a prefix of toks[pos:]."""
    if isinstance(node, Lit):
        if toks[pos:pos + len(node.toks)] == node.toks:
            yield pos + len(node.toks), env, 0.0
    elif isinstance(node, Ref):
        if pos < len(toks) and toks[pos] == env.get(node.var):
            yield pos + 1, env, 0.0
    elif isinstance(node, Word):  # Bind included
        if pos < len(toks) and toks[pos] in node.index:
            i = node.index[toks[pos]]
            yield pos + 1, ({**env, node.var: toks[pos]} if isinstance(node, Bind) else env), node.logp[i]
    elif isinstance(node, Seq):
        def chain(i, pos, env, lp):
            if i == len(node.kids):
                yield pos, env, lp
                return
            for p2, e2, l2 in _derivations(node.kids[i], toks, pos, env):
                yield from chain(i + 1, p2, e2, lp + l2)
        yield from chain(0, pos, env, 0.0)
    else:
        assert isinstance(node, Choice)
        for alt, lp in zip(node.alts, node.logp):
            for p2, e2, l2 in _derivations(alt, toks, pos, env):
                yield p2, e2, l2 + lp


def all_parses(sw, text):
    toks = tokenize(text)
    return [lp for end, _, lp in _derivations(sw.g.root, toks, 0, {}) if end == len(toks)]


# --- the grammar itself -------------------------------------------------------

def test_every_distribution_sums_to_one(sw):
    n_dist = 0
    for node in sw.g.nodes:
        dist = getattr(node, "probs", None)
        if dist is not None:
            n_dist += 1
            assert all(p > 0 for p in dist)
            assert math.isclose(sum(dist), 1.0, rel_tol=0, abs_tol=1e-12)
            assert math.isclose(sum(math.exp(lp) for lp in node.logp), 1.0, abs_tol=1e-12)
    assert n_dist > 30
    uni = sw.unigram()
    assert math.isclose(sum(uni.values()), 1.0, abs_tol=1e-12)
    assert all(p > 0 for p in uni.values())


def test_lexicon(sw):
    uni = sw.unigram()
    owner = owner_of(sw)
    assert 500 <= len(uni) <= 5000
    assert set(owner) <= set(uni)
    for w in uni:
        assert words(w) == [w]
    # Zipf inside a class: weights fall with rank.
    for node in sw.g.nodes:
        if type(node) is Word:
            assert all(a > b for a, b in zip(node.probs, node.probs[1:]))


def test_story_shape(sw):
    for s in sw.sample(300, 3):
        assert "\n" not in s and s == s.strip()
        assert s.startswith(("Once", "Long ago,", "In a")) and s.endswith(" The end.")
        assert s.count("The end.") == 1 and s.count('"') == 4
        assert 40 <= len(words(s)) <= 150
    assert 40 <= sw.expected_words_per_story() <= 150


# --- log-probabilities and unambiguity ------------------------------------------

def test_logprob_matches_generation(sw):
    for text, lp in sw.sample_with_logprob(500, 7):
        assert lp < 0
        assert math.isclose(sw.logprob(text), lp, rel_tol=1e-9)


def test_parse_then_regenerate(sw):
    for text in sw.sample(300, 11):
        picks = sw.derivation(text)
        assert picks is not None and sw.replay(picks) == text


def test_exactly_one_derivation(sw):
    """An exhaustive parser that tries every alternative finds exactly one derivation of
    each sampled story, with the same probability as logprob(): the LL(1) parse is not
    merely one of several."""
    for text in sw.sample(150, 13):
        parses = all_parses(sw, text)
        assert len(parses) == 1
        assert math.isclose(parses[0], sw.logprob(text), rel_tol=1e-9)


# --- the validator ----------------------------------------------------------------

def test_accepts_every_sample(sw):
    stories = sw.sample(2000, 5)
    assert all(sw.is_valid(s) for s in stories)
    assert sw.is_valid("  " + stories[0] + "\n")  # surrounding whitespace is ignored


def test_rejects_empty_and_junk(sw):
    for text in ["", "   ", "\n", "The end.", "Once upon a time.", "hello world"]:
        assert sw.logprob(text) is None and not sw.is_valid(text)


def _word_positions(toks):
    return [i for i, t in enumerate(toks) if t[0].isalpha()]


def test_rejects_word_from_another_class(sw):
    """Swap one class word for a word of a different class, keeping capitals and spacing
    right, so only the grammar can reject it. Every class fills its own slots and the
    hero's and friend's names are repeated, so no such swap is a valid story."""
    owner = owner_of(sw)
    by_class = {}
    for w, c in owner.items():
        by_class.setdefault(c, []).append(w)
    rng = random.Random(0)
    for text in sw.sample(300, 17):
        toks = tokenize(text)
        pos = rng.choice([i for i in _word_positions(toks) if toks[i] in owner])
        other = rng.choice(sorted(set(by_class) - {owner[toks[pos]]}))
        toks[pos] = rng.choice(by_class[other])
        bad = render(toks)
        assert not sw.is_valid(bad), bad
        assert all_parses(sw, bad) == []


def test_rejects_unknown_word(sw):
    rng = random.Random(1)
    for text in sw.sample(200, 19):
        toks = tokenize(text)
        toks[rng.choice(_word_positions(toks))] = rng.choice(["xylograph", "quux", "blorft", "don't"])
        assert not sw.is_valid(render(toks))


def test_rejects_truncations(sw):
    """No proper prefix of a story is a story (the closing sentence is unique)."""
    for text in sw.sample(20, 23):
        toks = tokenize(text)
        assert toks[-3:] == ["the", "end", "."]
        assert not sw.is_valid(render(toks[:-2] + ["."]))       # last word dropped
        assert not sw.is_valid(text[: -len(" The end.")])       # last sentence dropped
        assert not sw.is_valid(text[:-1])                       # final full stop dropped
        for k in range(len(toks)):                              # every proper prefix
            assert not sw.is_valid(render(toks[:k]))


def test_rejects_wrong_surface_form(sw):
    text = sw.sample(1, 29)[0]
    for bad in [text[0].lower() + text[1:], text.replace(" ", "  ", 1), text.replace('"', "", 1),
                text.replace(".", " .", 1), text + " The end.", text.replace(",", "", 1)]:
        assert not sw.is_valid(bad), bad


# --- partial validity: the valid prefix and lenient names -----------------------------

STORY = ('Once there was a sweet boy named Sam. He liked to eat rice with his baby. One day, he went to the farm. '
         'There, he met a slimy dog named Biscuit. Sam whispered, "Hi, Biscuit! Let\'s go to the bakery together!" '
         'Biscuit said, "Yes, I would love to!" But then, it started to drizzle. Sam felt very angry. '
         'Biscuit helped him fix the magnet. Sam felt happy again. Sam and Biscuit baked together all morning long. '
         'The end.')
# once there was a sweet boy named sam .           tokens 0-8
# he liked to eat rice with his baby .             9-17
# one day , he went to the farm .                  18-26
# there , he met a slimy dog named biscuit .       27-36
# sam whispered , " hi , biscuit ! ...             37-: the hero's name again (a Ref) at 37
N_STORY = 102
FIRST_HERO_REF = 37


def test_story_fixture_is_a_true_story(sw):
    assert sw.is_valid(STORY) and sw.is_grammatical(STORY)
    toks = tokenize(STORY)
    assert len(toks) == N_STORY and toks[7] == toks[FIRST_HERO_REF] == "sam"
    assert sw.valid_prefix(STORY) == 1.0


def test_other_name_later_is_grammatical_but_invalid(sw):
    # The hero is named Sam once (token 7); every later Sam becomes Tom, another boy name.
    head, tail = STORY.split("Sam", 1)
    bad = head + "Sam" + tail.replace("Sam", "Tom")
    assert bad.count("Sam") == 1 and bad.count("Tom") == 4
    assert not sw.is_valid(bad)
    assert sw.is_grammatical(bad)
    assert sw.valid_prefix(bad) == FIRST_HERO_REF / N_STORY
    # Only the Ref is lenient: naming the hero Tom first and Sam later is the same slip.
    assert sw.is_grammatical(STORY.replace("Sam.", "Tom.", 1)) and not sw.is_valid(STORY.replace("Sam.", "Tom.", 1))
    # The friend's name is a Ref too.
    assert sw.is_grammatical(STORY.replace("Biscuit said", "Rex said"))


def test_lenient_names_still_need_their_class_and_pronouns(sw):
    for bad in [STORY.replace("Sam whispered", "Lily whispered"),     # a girl's name where the boy is
                STORY.replace("Biscuit said", "Lily said"),           # not a pet name
                STORY.replace("He liked", "She liked"),               # pronoun agreement is structural
                STORY.replace("helped him", "helped her"),
                STORY.replace("Sam felt very", "sam felt very")]:     # surface form still counts
        assert not sw.is_grammatical(bad) and not sw.is_valid(bad), bad
    # The prefix counts tokens only, so the lower-case name costs nothing there.
    assert sw.valid_prefix(STORY.replace("Sam felt very", "sam felt very")) == 1.0
    assert sw.valid_prefix(STORY.replace("He liked", "She liked")) == 9 / N_STORY


@pytest.mark.parametrize("k", [0, 1, 20, 37, 101, 102])
def test_valid_prefix_stops_at_an_inserted_nonword(sw, k):
    toks = tokenize(STORY)
    text = render(toks[:k] + ["blorft"] + toks[k:])
    assert sw.valid_prefix(text) == k / (N_STORY + 1)  # k = 102: the story is whole and "blorft" trails it


@pytest.mark.parametrize("junk, tokens", [("1234", 4), (";; --", 4), (":)", 2), ("café", 2)])
def test_valid_prefix_stops_at_characters_the_grammar_never_writes(sw, junk, tokens):
    """They were dropped before parsing, so a story with "1234 ;;" inside it kept the whole prefix."""
    toks = tokenize(STORY)
    text = render(toks[:20]) + f" {junk} " + render(toks[20:])
    assert sw.valid_prefix(text) == 20 / (N_STORY + tokens) and not sw.is_valid(text)


def test_valid_prefix_edge_cases(sw):
    for empty in ["", "   ", "\n"]:
        assert sw.valid_prefix(empty) == 0.0 and not sw.is_grammatical(empty)
    assert sw.valid_prefix("!!") == 0.0
    # once upon a time there: the literal "upon a time ," breaks at its comma, after 4 good tokens
    assert sw.valid_prefix("Once upon a time there") == 4 / 5
    # A story cut short is right as far as it goes: validity, not the prefix, says it is unfinished.
    cut = render(tokenize(STORY)[:50])
    assert sw.valid_prefix(cut) == 1.0 and not sw.is_valid(cut) and not sw.is_grammatical(cut)


def test_valid_prefix_at_a_random_unknown_word(sw):
    rng = random.Random(3)
    for text in sw.sample(200, 37):
        assert sw.valid_prefix(text) == 1.0 and sw.is_grammatical(text)
        toks = tokenize(text)
        k = rng.choice(_word_positions(toks))
        toks[k] = "quux"
        assert sw.valid_prefix(render(toks)) == k / len(toks)


# --- exact statistics against sampling ----------------------------------------------

def test_unigram_matches_sample(sw, big):
    uni = sw.unigram()
    top = list(uni)[:50]  # unigram() is sorted by probability
    idx = {w: i for i, w in enumerate(top)}
    counts = np.zeros((len(big), len(top)))
    lengths = np.zeros(len(big))
    for s, (text, _) in enumerate(big):
        ws = words(text)
        lengths[s] = len(ws)
        for w in ws:
            if w in idx:
                counts[s, idx[w]] += 1
    emp = counts.sum(0) / lengths.sum()
    true = np.array([uni[w] for w in top])
    # Ratio estimator sum(c) / sum(n): its standard error over independent stories.
    resid = counts - true[None, :] * lengths[:, None]
    se = resid.std(0, ddof=1) / math.sqrt(len(big)) / lengths.mean()
    assert np.all(np.abs(emp - true) < 5 * se + 1e-12), list(zip(top, emp, true, se))
    # And the expected story length.
    assert abs(lengths.mean() - sw.expected_words_per_story()) < 5 * lengths.std(ddof=1) / math.sqrt(len(big))


def test_entropy_matches_sample(sw, big):
    nll = np.array([-lp for _, lp in big])
    se = nll.std(ddof=1) / math.sqrt(len(nll))
    assert abs(nll.mean() - sw.entropy_per_story()) < 5 * se


# --- seeds and the tail -------------------------------------------------------------

def test_seeds(sw):
    a = sw.sample(50, 1)
    assert a == sw.sample(50, 1)
    assert a != sw.sample(50, 2)
    assert sw.sample(10, 1) == a[:10]
    assert [t for t, _ in sw.sample_with_logprob(50, 1)] == a
    assert len(set(a)) == len(a)


def test_rare_words(sw):
    rare = sw.rare_words(DEFAULT_RARE_MAX_PROB)
    assert 200 <= len(rare) <= 800
    assert all(0 < p < DEFAULT_RARE_MAX_PROB for p in rare.values())
    assert rare == {w: p for w, p in sw.unigram().items() if p < DEFAULT_RARE_MAX_PROB}
    # A human-sized sample (20,000 words) holds only part of the tail.
    seen, n = set(), 0
    for text in sw.sample(1000, 31):
        ws = words(text)
        seen.update(ws)
        n += len(ws)
        if n >= 20000:
            break
    share = len(seen & set(rare)) / len(rare)
    assert 0.1 < share < 0.8


def test_evaluator_reference_draws_true_stories_of_the_full_size():
    """The human reference of a storyworld run is measured at exactly eval.sample_words words."""
    from testbed.config import load_config
    from testbed.metrics.suite import Evaluator
    from testbed.tokenizer import train_tokenizer

    world = StoryWorld()
    train = world.sample(300, 1)
    # 1.2e-4 of the ~28,000 training words: a rare threshold of count 3
    cfg = load_config(None, ["eval.sample_words=5000", "eval.truth_docs=5", "eval.rare_max_freq=0.00012"])
    ev = Evaluator(cfg, train_tokenizer(train, 300), train, world.sample(10, 2))
    row = ev.reference(seed=3)
    assert row["eval_words"] == 5000 and row["comparable"] is True
    assert row["validity_rate"] == 1.0 and 0 < row["true_tail_recall"] < 1

