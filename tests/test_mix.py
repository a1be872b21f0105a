import random
from collections import Counter

import numpy as np
import pytest

from testbed.config import MixConfig
from testbed.mix import (HUMAN, anchor_docs, composition, documents, fill, nested_sample, synthetic_docs, synthetic_label,
                         training_set)
from testbed.tokenizer import train_tokenizer

HUMAN_DOCS = [f"h{i}" for i in range(50)]
SYNTH = {k: [f"s{k}_{i}" for i in range(40)] for k in range(4)}


def docs(examples):
    return [d for _, d in examples]


def test_synthetic_label():
    assert synthetic_label(0) == "synthetic:gen_000"
    assert synthetic_label(12) == "synthetic:gen_012"


@pytest.mark.parametrize("regime", ["replace", "accumulate", "anchor"])
def test_generation_zero_is_the_human_split(regime):
    out = training_set(0, HUMAN_DOCS, {}, MixConfig(regime=regime), seed=0, anchor_seed=0)
    assert out == [(HUMAN, d) for d in HUMAN_DOCS]


def test_replace_uses_only_the_newest_corpus():
    out = training_set(3, HUMAN_DOCS, SYNTH, MixConfig(regime="replace"), seed=0, anchor_seed=0)
    assert out == [(synthetic_label(2), d) for d in SYNTH[2]]


def test_accumulate_uses_human_and_every_synthetic_corpus():
    out = training_set(3, HUMAN_DOCS, SYNTH, MixConfig(regime="accumulate"), seed=0, anchor_seed=0)
    expected = [(HUMAN, d) for d in HUMAN_DOCS] + [(synthetic_label(k), d) for k in range(3) for d in SYNTH[k]]
    assert sorted(out) == sorted(expected)
    assert composition(out) == {HUMAN: 50, "synthetic:gen_000": 40, "synthetic:gen_001": 40, "synthetic:gen_002": 40}


def test_anchor_share_is_exact_and_labels_are_right():
    out = training_set(2, HUMAN_DOCS, SYNTH, MixConfig(regime="anchor", anchor_fraction=0.25), seed=0, anchor_seed=7)
    # grow: the newest corpus's 40 docs, round(0.25 * 40) = 10 of them human
    assert composition(out) == {HUMAN: 10, "synthetic:gen_001": 30}
    assert len(set(docs(out))) == 40
    for label, d in out:
        assert (label == HUMAN) == (d in HUMAN_DOCS)
        assert label == HUMAN or d in SYNTH[1]


@pytest.mark.parametrize("fraction, humans", [(0.0, 0), (1.0, 40), (0.1, 4)])
def test_anchor_fraction_extremes(fraction, humans):
    out = training_set(1, HUMAN_DOCS, SYNTH, MixConfig(regime="anchor", anchor_fraction=fraction), seed=0, anchor_seed=0)
    assert composition(out).get(HUMAN, 0) == humans and len(out) == 40


def test_fixed_anchor_set_is_identical_across_generations():
    cfg = MixConfig(regime="anchor", anchor_fraction=0.25, anchor_set="fixed")
    anchors = [
        {d for label, d in training_set(g, HUMAN_DOCS, SYNTH, cfg, seed=g, anchor_seed=99) if label == HUMAN}
        for g in (1, 2, 3)
    ]
    assert anchors[0] == anchors[1] == anchors[2] and len(anchors[0]) == 10


def test_a_fixed_anchor_that_grows_by_a_document_keeps_the_documents_it_had():
    """mix.size=grow: the anchor's size follows the newest corpus, which loses its unfinished samples. random.sample
    changes method between 341 and 342 of 3,600, where 18 of the 341 used to be swapped out."""
    human = [f"h{i}" for i in range(3600)]
    cfg = MixConfig(regime="anchor", anchor_fraction=0.1, anchor_set="fixed")
    anchors = [[d for label, d in training_set(1, human, {0: [f"s{i}" for i in range(n)]}, cfg, seed=0, anchor_seed=3)
                if label == HUMAN] for n in (3410, 3420, 3600)]
    assert [len(a) for a in anchors] == [341, 342, 360]
    assert anchors[1][:341] == anchors[0] and anchors[2][:342] == anchors[1]


@pytest.mark.parametrize("k", [342, 360, 900, 3600])
def test_nested_sample_draws_as_random_sample_where_that_uses_its_method(k):
    """The fixed anchors of runs made before nested_sample (360 of 3,600 in the labs) are drawn as they were."""
    population = list(range(3600))
    assert nested_sample(random.Random(11), population, k) == random.Random(11).sample(population, k)


@pytest.mark.parametrize("n, fraction, expected", [(5, 0.1, 1), (1, 0.5, 1), (4, 0.1, 1), (25, 0.1, 2), (35, 0.1, 4),
                                                   (40, 0.0, 0), (0, 0.5, 0), (3600, 0.1, 360)])
def test_an_anchored_pool_holds_at_least_one_human_document(n, fraction, expected):
    assert anchor_docs(fraction, n) == expected
    synthetic = {0: [f"s{i}" for i in range(n)]}
    out = training_set(1, HUMAN_DOCS, synthetic, MixConfig(regime="anchor", anchor_fraction=fraction), seed=0, anchor_seed=0)
    assert composition(out).get(HUMAN, 0) == min(expected, len(HUMAN_DOCS))


def test_fresh_anchor_is_new_human_text_never_the_training_split():
    cfg = MixConfig(regime="anchor", anchor_fraction=0.25, anchor_set="fresh")
    asked = []

    def fresh(n):
        asked.append(n)
        return [f"fresh{len(asked)}-{i}" for i in range(n)]

    out = training_set(1, HUMAN_DOCS, SYNTH, cfg, seed=0, anchor_seed=1, fresh=fresh)
    anchor = [d for label, d in out if label == HUMAN]
    assert asked == [len(anchor)] and anchor == [f"fresh1-{i}" for i in range(len(anchor))]
    assert not set(anchor) & set(HUMAN_DOCS)



def test_a_fresh_anchor_may_be_larger_than_the_split_a_fixed_one_may_not():
    """More human text than the split holds is what a fresh anchor is for (the data-constrained lab's one_pass
    arm); a fixed anchor is a draw from the split, so the split caps it."""
    fresh = lambda n: [f"new-{i}" for i in range(n)]
    big = MixConfig(regime="anchor", anchor_fraction=1.0, anchor_set="fresh", size="fixed", docs=3 * len(HUMAN_DOCS))
    assert composition(training_set(1, HUMAN_DOCS, SYNTH, big, seed=0, anchor_seed=0, fresh=fresh)) == {
        HUMAN: 3 * len(HUMAN_DOCS)}
    capped = MixConfig(regime="anchor", anchor_fraction=1.0, anchor_set="fixed", size="fixed", docs=3 * len(HUMAN_DOCS))
    assert composition(training_set(1, HUMAN_DOCS, SYNTH, capped, seed=0, anchor_seed=0))[HUMAN] == len(HUMAN_DOCS)

def test_anchor_with_fixed_size_uses_mix_docs():
    cfg = MixConfig(regime="anchor", anchor_fraction=0.5, size="fixed", docs=20)
    out = training_set(1, HUMAN_DOCS, SYNTH, cfg, seed=0, anchor_seed=0)
    assert composition(out) == {HUMAN: 10, "synthetic:gen_000": 10}


@pytest.mark.parametrize("regime", ["replace", "accumulate"])
def test_fixed_size_subsamples_to_mix_docs(regime):
    cfg = MixConfig(regime=regime, size="fixed", docs=25)
    out = training_set(3, HUMAN_DOCS, SYNTH, cfg, seed=4, anchor_seed=0)
    assert len(out) == 25 and len(set(out)) == 25
    assert out == training_set(3, HUMAN_DOCS, SYNTH, cfg, seed=4, anchor_seed=0)
    assert out != training_set(3, HUMAN_DOCS, SYNTH, cfg, seed=5, anchor_seed=0)


def test_fixed_size_defaults_to_the_human_split_size():
    out = training_set(3, HUMAN_DOCS, SYNTH, MixConfig(regime="accumulate", size="fixed"), seed=0, anchor_seed=0)
    assert len(out) == len(HUMAN_DOCS)


def test_fixed_size_keeps_a_smaller_pool_whole():
    out = training_set(1, HUMAN_DOCS, SYNTH, MixConfig(regime="replace", size="fixed", docs=100), seed=0, anchor_seed=0)
    assert sorted(docs(out)) == sorted(SYNTH[0])


def test_after_curation_the_mix_offers_the_whole_newest_corpus():
    cfg = MixConfig(regime="anchor", anchor_fraction=0.5, size="fixed", docs=20, after_curation=True)
    out = training_set(1, HUMAN_DOCS, SYNTH, cfg, seed=0, anchor_seed=0)
    assert composition(out) == {HUMAN: 10, "synthetic:gen_000": 40}
    replace = training_set(1, HUMAN_DOCS, SYNTH, MixConfig(size="fixed", docs=20, after_curation=True), seed=0, anchor_seed=0)
    assert len(replace) == 40


def test_fill_keeps_the_curated_human_anchor_and_tops_up_with_synthetic():
    cfg = MixConfig(regime="anchor", anchor_fraction=0.5, size="fixed", docs=20, after_curation=True)
    # Curation kept 8 of the 10 anchor documents and 30 synthetic ones: 8 human + 12 synthetic fill the 20.
    curated = [(HUMAN, f"h{i}") for i in range(8)] + [("synthetic:gen_000", f"s{i}") for i in range(30)]
    out = fill(curated, cfg, n_human=50, seed=1)
    assert composition(out) == {HUMAN: 8, "synthetic:gen_000": 12} and len(set(docs(out))) == 20
    assert out == fill(curated, cfg, n_human=50, seed=1) and out != fill(curated, cfg, n_human=50, seed=2)
    assert fill(curated[:15], cfg, n_human=50, seed=1) == curated[:15]  # short of the budget: all of it
    # Other regimes subsample the curated pool as a whole; mix.docs=null means the human split's size.
    assert len(fill(curated, MixConfig(size="fixed", after_curation=True), n_human=25, seed=0)) == 25


def test_same_document_text_keeps_its_provenance():
    # A synthetic document equal to a human one is still counted as synthetic.
    synth = {0: ["h0", "h1"]}
    out = training_set(1, ["h0", "h1"], synth, MixConfig(regime="accumulate"), seed=0, anchor_seed=0)
    assert Counter(out) == Counter({(HUMAN, "h0"): 1, (HUMAN, "h1"): 1,
                                    ("synthetic:gen_000", "h0"): 1, ("synthetic:gen_000", "h1"): 1})


def test_composition_counts_sorted_by_label():
    out = composition([("synthetic:gen_001", 1), (HUMAN, 2), ("synthetic:gen_000", 3), (HUMAN, 4)])
    assert out == {HUMAN: 2, "synthetic:gen_000": 1, "synthetic:gen_001": 1}
    assert list(out) == [HUMAN, "synthetic:gen_000", "synthetic:gen_001"]
    assert composition([]) == {}


def test_documents_share_one_array_of_ids(words_corpus):
    tokenizer = train_tokenizer(words_corpus, 300)
    texts = words_corpus[:20]
    docs = documents(tokenizer, texts)
    expected = tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert [d.ids.tolist() for d in docs] == expected and [d.text for d in docs] == texts
    flat = docs[0].ids.base
    assert all(d.ids.base is flat for d in docs) and flat.size == sum(map(len, expected))
    rows = [{"text": t, "ended": i % 2 == 0} for i, t in enumerate(texts[:6])]
    synthetic = synthetic_docs(rows, tokenizer, keep_unfinished=False)
    assert [d.text for d in synthetic] == texts[:6:2] and all(d.ended for d in synthetic)
    assert [d.ids.tolist() for d in synthetic] == expected[:6:2]
    assert all(isinstance(d.ids, np.ndarray) for d in synthetic)


def test_what_a_model_wrote_trains_the_next_generation_unknown_for_unknown(words_corpus):
    # A generation's stories come back as text: each <|unk|> a model wrote is one unknown id for the next
    # model, as it was for the writer, so unknowns do not multiply from generation to generation.
    tok = train_tokenizer(words_corpus, 300, "word")
    unk = tok.unk_token_id
    written = tok(" the cat", add_special_tokens=False)["input_ids"]
    written = written[:1] + [unk] * 3 + written[1:]
    rows = [{"text": tok.decode(written), "ended": True}]
    (doc,) = synthetic_docs(rows, tok, keep_unfinished=False)
    assert list(doc.ids) == written
