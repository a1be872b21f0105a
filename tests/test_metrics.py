import math
import random
import re
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from testbed.config import load_config
from testbed.corpus.storyworld import BOY_NAMES, StoryWorld, tokenize
from testbed.metrics.diversity import distinct_n, fixed_size_sample
from testbed.metrics.perplexity import band_perplexity, bits_per_byte, document_nll, perplexity, token_nll, windows
from testbed.metrics.shape import js_divergence
from testbed.metrics.suite import RECALLS, Evaluator, ratio_se, relative
from testbed.metrics.tail import rare_types, recall, word_counts
from testbed.sample import Sample
from testbed.text import words
from testbed.tokenizer import encode, train_tokenizer

# --- windows -----------------------------------------------------------------


@pytest.mark.parametrize("context", [2, 3, 4, 8, 9])
@pytest.mark.parametrize("extra", [-5, -1, 0, 1, 7, 2 * 8 + 3, 3 * 9])
def test_windows_score_every_target_exactly_once(context, extra):
    n = max(2, context + extra)  # shorter than, equal to and longer than the context
    seq = list(range(n))  # values are positions
    ws = windows(seq, context)
    assert all(2 <= len(w) <= context and 1 <= new <= len(w) - 1 for _, w, new in ws)
    assert all(w == seq[start: start + len(w)] for start, w, _ in ws)
    scored = [t for _, w, new in ws for t in w[len(w) - new:]]  # a window's first token is only history
    assert scored == list(range(1, n))
    if n > context:  # a later window's targets keep at least half a context of history
        assert all(w.index(t) >= context - context // 2 for _, w, new in ws[1:] for t in w[len(w) - new:])
        assert all(b - a == context // 2 for (a, _, _), (b, _, _) in zip(ws, ws[1:]))


def test_windows_slide_by_half_the_context():
    seq = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
    assert windows(seq, 4) == [(0, [10, 11, 12, 13], 3), (2, [12, 13, 14, 15], 2), (4, [14, 15, 16, 17], 2),
                               (6, [16, 17, 18, 19], 2)]
    assert windows(seq[:5], 4) == [(0, [10, 11, 12, 13], 3), (2, [12, 13, 14], 1)]
    assert windows(seq[:4], 4) == [(0, [10, 11, 12, 13], 3)]  # fits: one window, as before
    assert windows([7], 4) == [(0, [7], 0)]  # nothing to predict


# --- document_nll / perplexity / bits_per_byte ------------------------------

EOS = 0
# Bigram probabilities P[current][next] over a 3-token vocabulary, EOS = 0.
P = [[0.2, 0.5, 0.3],
     [0.1, 0.6, 0.3],
     [0.25, 0.25, 0.5]]


class Bigram(torch.nn.Module):
    """Logits depend on the current token only, so the exact NLL is a product of table entries."""

    def __init__(self, context):
        super().__init__()
        self.config = SimpleNamespace(n_positions=context)
        self.table = torch.nn.Parameter(torch.tensor(P).log())

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.table[input_ids])


DOCS = [[1, 2], [], [2, 2, 1, 1, 2]]
EXPECTED_NLL = [
    -math.log(0.5 * 0.3 * 0.25),  # EOS 1 2 EOS: P01 P12 P20
    -math.log(0.2),  # EOS EOS: P00
    -math.log(0.3 * 0.5 * 0.25 * 0.6 * 0.3 * 0.25),  # EOS 2 2 1 1 2 EOS
]


@pytest.mark.parametrize("context", [2, 3, 4, 7, 64])
@pytest.mark.parametrize("batch_size", [1, 2, 32])
def test_document_nll_matches_hand_computed_bigram(context, batch_size):
    nll = document_nll(Bigram(context), DOCS, EOS, batch_size=batch_size)
    assert nll == pytest.approx(EXPECTED_NLL, rel=1e-6)


@pytest.mark.parametrize("context", [2, 3, 64])
def test_token_nll_is_per_target_token(context):
    nll = token_nll(Bigram(context), DOCS, EOS, batch_size=2)
    # EOS 2 2 1 1 2 EOS: each target's -log P[previous][target]
    assert nll[2] == pytest.approx([-math.log(p) for p in (0.3, 0.5, 0.25, 0.6, 0.3, 0.25)], rel=1e-6)
    assert [len(t) for t in nll] == [3, 1, 6]


def test_band_perplexity_hand_computed():
    nll = token_nll(Bigram(4), DOCS, EOS)
    band_of_id = np.array([2, 0, 1])  # EOS common, token 1 rare, token 2 middle
    ppl = band_perplexity(nll, DOCS, EOS, band_of_id)
    # rare targets (token 1): P01 in doc 0, P21 and P11 in doc 2
    assert ppl["rare"] == pytest.approx((0.5 * 0.25 * 0.6) ** (-1 / 3), rel=1e-6)
    # common targets (EOS): P20, P00, P20
    assert ppl["common"] == pytest.approx((0.25 * 0.2 * 0.25) ** (-1 / 3), rel=1e-6)
    assert band_perplexity(nll, DOCS, EOS, np.array([2, 1, 1]))["rare"] is None  # no rare targets at all


def test_views_of_encoded_ids_score_as_lists(as_ids):
    nll = token_nll(Bigram(3), as_ids(DOCS), EOS, batch_size=2)
    assert all(np.array_equal(a, b) for a, b in zip(nll, token_nll(Bigram(3), DOCS, EOS, batch_size=2)))
    band_of_id = np.array([2, 0, 1])
    assert band_perplexity(nll, as_ids(DOCS), EOS, band_of_id) == band_perplexity(nll, DOCS, EOS, band_of_id)


def test_uniform_model_has_perplexity_vocab_size(make_model):
    model = make_model(vocab=64)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # tied with the embeddings: every logit is 0
    docs = [[5], [3, 4, 5, 6] * 20, list(range(1, 31)), [7, 8]]  # 80 tokens > context 32
    nll = document_nll(model, docs, EOS, batch_size=2)
    for d, value in zip(docs, nll):
        assert value == pytest.approx((len(d) + 1) * math.log(64), rel=1e-5)
    assert perplexity(nll, docs) == pytest.approx(64, rel=1e-5)


def test_batched_nll_equals_one_document_at_a_time(make_model):
    """Right padding in a batch must not change any document's score."""
    model = make_model(seed=3)
    docs = [[1, 2, 3], [4] * 20, [5, 6, 7, 8, 9, 10, 11]]
    expected = []
    with torch.no_grad():
        for d in docs:
            ids = torch.tensor([[EOS] + d + [EOS]])
            logp = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
            expected.append(-logp.gather(-1, ids[0, 1:, None]).sum().item())
    assert document_nll(model, docs, EOS, batch_size=3) == pytest.approx(expected, rel=1e-5)


def test_long_document_nll_equals_a_per_token_reference_loop(make_model):
    """A document 3x the context: each target scored once, with the history the stride rule gives it."""
    context, stride = 32, 16
    model = make_model(seed=4, context=context)
    doc = [int(t) for t in torch.randint(1, 64, (3 * context,), generator=torch.Generator().manual_seed(0))]
    short = [5, 6, 7]
    seq = [EOS] + doc + [EOS]
    expected = []
    with torch.no_grad():
        for t in range(1, len(seq)):
            # the first window (starts 0, stride, 2 stride, ...) that holds target t scores it
            start = max(0, (t - context) // stride + 1) * stride
            ids = torch.tensor([seq[start: t]])  # the history; its last logits predict seq[t]
            assert ids.shape[1] < context and (start == 0 or ids.shape[1] >= context - stride)
            logits = model(input_ids=ids).logits
            expected.append(-logits[0, -1].log_softmax(-1)[seq[t]].item())
    scored = Counter(begin + j for begin, w, new in windows(seq, context) for j in range(len(w) - new, len(w)))
    assert scored == Counter(range(1, len(seq)))  # every target of the 98 exactly once
    nll = token_nll(model, [short, doc], EOS, batch_size=3)
    assert len(nll[1]) == len(doc) + 1
    assert nll[1] == pytest.approx(expected, rel=1e-5)
    assert document_nll(model, [doc], EOS)[0] == pytest.approx(sum(expected), rel=1e-5)
    with torch.no_grad():  # a document that fits is scored in one pass, as before
        ids = torch.tensor([[EOS] + short + [EOS]])
        one = -model(input_ids=ids).logits[0, :-1].log_softmax(-1).gather(-1, ids[0, 1:, None]).squeeze(-1)
    assert nll[0] == pytest.approx(one.numpy(), rel=1e-5)


def test_perplexity_arithmetic():
    # exp((3 + 1) nats / ((2 + 1) + (3 + 1)) predicted tokens) = exp(4 / 7)
    assert perplexity([3.0, 1.0], [[1, 2], [3, 4, 5]]) == pytest.approx(math.exp(4 / 7))


def test_bits_per_byte_arithmetic():
    # (10 + 6) bits over (3 + 1) + (2 + 1) bytes: "é" is 2 bytes in UTF-8, +1 per document end
    assert bits_per_byte([10 * math.log(2), 6 * math.log(2)], ["abc", "é"]) == pytest.approx(16 / 7)


# --- diversity ---------------------------------------------------------------

@pytest.mark.parametrize("n, expected", [
    (1, 2 / 4),  # a b a b: {a, b} of 4
    (2, 2 / 3),  # ab ba ab: {ab, ba} of 3
    (4, 1.0),
    (5, None),  # no 5-grams at all: undefined, not "no diversity" (0)
])
def test_distinct_n(n, expected):
    assert distinct_n([["a", "b", "a", "b"]], n) == (pytest.approx(expected) if expected is not None else None)


def test_distinct_n_does_not_cross_documents():
    # (a b), (a b): 1 of 2; across the boundary (b a) would make it 2 of 3
    assert distinct_n([["a", "b"], ["a", "b"]], 2) == pytest.approx(1 / 2)
    assert distinct_n([], 1) is None


TEXTS = ["one two three", "four five", "six seven eight nine", "ten", "eleven twelve thirteen"]


def test_fixed_size_sample_returns_exactly_n_words_in_seeded_order():
    sample = fixed_size_sample(TEXTS, 7, seed=3)
    assert sum(map(len, sample)) == 7
    order = list(range(len(TEXTS)))
    random.Random(3).shuffle(order)
    expected = [w for i in order for w in words(TEXTS[i])][:7]
    assert [w for d in sample for w in d] == expected
    assert fixed_size_sample(TEXTS, 7, seed=3) == sample
    assert any(fixed_size_sample(TEXTS, 7, seed=s) != sample for s in range(4, 10))


def test_fixed_size_sample_keeps_everything_when_the_corpus_is_smaller():
    sample = fixed_size_sample(TEXTS + ["123 !!!"], 100, seed=0)
    assert sum(map(len, sample)) == 13
    assert all(sample)  # documents without words are left out


# --- tail --------------------------------------------------------------------

def test_word_counts_and_rare_types():
    counts = word_counts([["a", "b", "a"], ["c", "a", "c"], ["d"]])
    assert counts == Counter(a=3, b=1, c=2, d=1)
    assert rare_types(counts, 1) == {"b", "d"}
    assert rare_types(counts, 2) == {"b", "c", "d"}


def test_rare_types_excludes_types_that_never_occur():
    counts = Counter(a=3, b=1)
    counts.subtract(["b"])  # b is now 0: it does not occur
    assert rare_types(counts, 2) == set()


def test_recall():
    rare = {"b", "c", "d", "e"}
    assert recall(rare, [["a", "b"], ["c", "x"]]) == pytest.approx(2 / 4)
    assert recall(rare, []) == 0.0
    assert recall(set(), [["a"]]) is None  # no rare band: undefined


def test_words():
    assert words("Don't stop, Lily's 3 cats! O'Brien-SMITH") == ["don't", "stop", "lily's", "cats", "o'brien", "smith"]
    assert words("123 ... '") == []
    # Letters of any script, and the typographic apostrophe of book text read as the ASCII one
    assert words("Lily didn\u2019t see the caf\u00e9. Na\u00efve \u00c9lodie\u2019s x_y") == [
        "lily", "didn't", "see", "the", "caf\u00e9", "na\u00efve", "\u00e9lodie's", "x", "y"]


# --- the suite -----------------------------------------------------------------

@pytest.fixture(scope="module")
def evaluator(words_corpus):
    # 0.25 of the 7 human words (5 bigrams): a rare threshold of count 1 on both
    cfg = load_config(None, ["data.source=local", "data.path=unused.txt", "eval.sample_words=8",
                             "eval.rare_max_freq=0.25", "eval.heldout_docs=2"])
    tokenizer = train_tokenizer(words_corpus, 300)
    train_texts = ["the cat sat", "the dog ran far"]  # the: 2; cat, sat, dog, ran, far: 1 each
    heldout = ["The fox ran.", "Owls hoot at night!", "not scored: beyond eval.heldout_docs"]
    return Evaluator(cfg, tokenizer, train_texts, heldout), tokenizer


def test_corpus_metrics_hand_computed(evaluator):
    ev, _ = evaluator
    row = ev.corpus_metrics(["The cat, the cat.", "A dog"], seed=0)
    # words: the cat the cat | a dog (6 words < 8, so all of them)
    assert row["eval_words"] == 6
    assert row["distinct_1"] == pytest.approx(4 / 6)  # the, cat, a, dog
    assert row["distinct_2"] == pytest.approx(3 / 4)  # (the cat) (cat the) (the cat) | (a dog)
    assert row["distinct_3"] == pytest.approx(2 / 2)  # (the cat the) (cat the cat)
    assert row["rare_token_recall"] == pytest.approx(2 / 5)  # cat, dog of {cat, sat, dog, ran, far}
    assert "validity_rate" not in row  # storyworld only


def test_evaluate_uniform_model(evaluator, make_model):
    ev, tokenizer = evaluator
    model = make_model(vocab=len(tokenizer))
    with torch.no_grad():
        model.lm_head.weight.zero_()
    samples = [Sample([0], [5, 6, 7], True), Sample([0], [8], False)]
    row = ev.evaluate(model, ["the cat", "a dog"], samples, seed=0)
    assert row["heldout_ppl"] == pytest.approx(300, rel=1e-5)
    held = ["The fox ran.", "Owls hoot at night!"]
    tokens = sum(len(ids) + 1 for ids in encode(tokenizer, held))
    # tokens * ln 300 nats, in bits, over (12 + 1) + (19 + 1) bytes
    assert row["heldout_bpb"] == pytest.approx(tokens * math.log2(300) / 33, rel=1e-5)
    assert row["ended_rate"] == 0.5 and row["mean_doc_tokens"] == 2.0
    assert row["rare_types"] == 5
    # A human prompt (sample.prompt=human) is part of the document, as in the reference's whole human documents;
    # the prompt's leading end token is not: 3 + 3 and 3 + 1 tokens.
    prompted = [Sample([0, 9, 10, 11], [5, 6, 7], True), Sample([0, 9, 10, 11], [8], False)]
    row = ev.evaluate(model, ["the cat", "a dog"], prompted, seed=0)
    assert row["mean_doc_tokens"] == 5.0 and row["doc_tokens_p10"] == pytest.approx(4.2)


def test_a_sample_without_words_has_no_figure_that_reads_as_no_collapse(evaluator):
    """A model that writes nothing is the extreme of collapse: its word figures are null, never the human-like end
    (JS 0, self-BLEU 0, compression 0, loop rate 0) they used to be."""
    ev, _ = evaluator
    row = ev.corpus_metrics(["", "...", ""], seed=0)
    assert row["eval_words"] == 0 and row["vocab_used"] == 0 and row["rare_token_recall"] == 0.0
    undefined = ["distinct_1", "distinct_2", "entropy_1", "entropy_2", "self_bleu", "compression_ratio", "zipf_slope",
                 "unigram_kl", "unigram_js", "tail_mass"]
    assert {k: row[k] for k in undefined} == dict.fromkeys(undefined)
    # One document of one word repeated: no pair for self-BLEU, where the loop rate is 1.
    row = ev.corpus_metrics(["the " * 8], seed=0)
    assert row["self_bleu"] is None and row["loop_rate"] == 1.0 and row["distinct_1"] == 1 / 8


def test_reference_scores_the_heldout_text(evaluator):
    ev, _ = evaluator
    row = ev.reference(seed=0)
    # "the fox ran" + "owls hoot at night" = 7 words; of the rare types only "ran" appears
    assert row["eval_words"] == 7 and row["rare_types"] == 5
    assert row["rare_token_recall"] == pytest.approx(1 / 5)
    # 7 words where eval.sample_words asks for 8: a reference of another size is flagged.
    assert row["source"] == "held-out split" and row["comparable"] is False


def test_corpus_metrics_shape_and_tail_hand_computed(evaluator):
    ev, tokenizer = evaluator
    texts = ["The cat, the cat.", "A dog"]
    row = ev.corpus_metrics(texts, seed=0)
    # sample: the cat the cat | a dog. Human: the 2; cat, sat, dog, ran, far 1 (all rare: threshold 1)
    assert row["distinct_4"] == pytest.approx(1 / 1)  # (the cat the cat)
    assert row["vocab_used"] == 4
    assert row["entropy_1"] == pytest.approx(2 / 3 * math.log2(3) + 1 / 3 * math.log2(6))  # 2/6 2/6 1/6 1/6
    assert row["tail_mass"] == pytest.approx(3 / 6)  # cat cat dog
    assert row["rare_mass_recall"] == pytest.approx(2 / 5)  # every rare type seen once in the human split
    # common: the fewest most frequent types covering half the 7 human words, down to count 1: rare wins the tie
    assert row["recall_by_band"] == {"rare": pytest.approx(2 / 5), "middle": None, "common": 1.0}  # no middle band
    # human bigrams, all rare: the-cat cat-sat the-dog dog-ran ran-far; the sample has the-cat
    assert row["rare_bigram_recall"] == pytest.approx(1 / 5)
    # add-one over the 7 types of both: human (c + 1) / 14, sample (c + 1) / 13
    human = {"the": 3, "cat": 2, "sat": 2, "dog": 2, "ran": 2, "far": 2, "a": 1}
    sample = {"the": 3, "cat": 3, "sat": 1, "dog": 2, "ran": 1, "far": 1, "a": 2}
    kl = sum(c / 14 * math.log2((c / 14) / (sample[w] / 13)) for w, c in human.items())
    assert row["unigram_kl"] == pytest.approx(kl)
    assert row["unigram_js"] == pytest.approx(js_divergence(Counter(the=2, cat=1, sat=1, dog=1, ran=1, far=1),
                                                            Counter(the=2, cat=2, a=1, dog=1)))
    assert row["loop_rate"] == 0.0
    tokens = sum(map(len, encode(tokenizer, texts)))
    assert row["eval_tokens"] == min(8, tokens)  # eval.sample_tokens defaults to eval.sample_words
    # the id sample: the same seeded document order, cut at 8 tokens
    assert row["rare_id_recall"] == recall(ev.rare_ids, fixed_size_sample(encode(tokenizer, texts), 8, 0, split=list))


def test_evaluate_adds_band_perplexity_confidence_and_relative_recall(evaluator, make_model):
    ev, tokenizer = evaluator
    model = make_model(vocab=len(tokenizer))
    with torch.no_grad():
        model.lm_head.weight.zero_()
    samples = [Sample([0], [5, 6, 7], True), Sample([0], [8], False)]
    row = ev.evaluate(model, ["the cat", "a dog"], samples, seed=0, gen0_texts=["far away", "sat", "ran"])
    for band in ("rare", "middle", "common"):
        assert row[f"heldout_ppl_{band}"] is None or row[f"heldout_ppl_{band}"] == pytest.approx(300, rel=1e-5)
    assert row["self_ppl"] == pytest.approx(300, rel=1e-5) and row["gen0_ppl"] == pytest.approx(300, rel=1e-5)
    assert row["rare_token_recall_rel"] is None  # the reference is not comparable: see the test below
    assert row["doc_tokens_p50"] == 2.0 and row["rare_bigram_types"] == 5
    assert "gen0_ppl" not in ev.evaluate(model, ["the cat", "a dog"], samples, seed=0)


def test_confidence_perplexity_scores_the_same_seeded_documents(evaluator, make_model, monkeypatch):
    ev, tokenizer = evaluator
    model = make_model(seed=1, vocab=len(tokenizer))
    texts = ["the cat sat", "a dog ran far", "owls hoot", "the end", "a fox"]
    monkeypatch.setattr(ev.cfg, "confidence_docs", 2, raising=False)  # read with getattr until EvalConfig has it
    picked = sorted(random.Random(7).sample(range(5), 2))
    ids = encode(tokenizer, [texts[i] for i in picked])
    expected = perplexity(document_nll(model, ids, tokenizer.eos_token_id), ids)
    assert ev.corpus_perplexity(model, texts, seed=7) == pytest.approx(expected)
    assert ev.corpus_perplexity(model, texts, seed=10) != pytest.approx(expected)  # documents 0 and 4


def test_relative_recall():
    row = {"rare_token_recall": 0.2, "rare_mass_recall": 0.3, "rare_bigram_recall": 0.1, "rare_id_recall": 0.5,
           "recall_by_band": {"rare": 0.2, "middle": 0.9, "common": 1.0}}
    ref = {"rare_token_recall": 0.8, "rare_mass_recall": 0.6, "rare_bigram_recall": 0.4, "rare_id_recall": 0.0,
           "recall_by_band": {"rare": 0.8, "middle": 0.9, "common": 1.0}}
    out = relative(row, {**ref, "comparable": True, "comparable_ids": True})
    assert out["rare_token_recall_rel"] == pytest.approx(0.25) and out["rare_mass_recall_rel"] == pytest.approx(0.5)
    assert out["rare_id_recall_rel"] is None  # human text recalls none: no ratio
    assert out["recall_by_band_rel"] == {"rare": pytest.approx(0.25), "middle": 1.0, "common": 1.0}
    out = relative(row, {**ref, "comparable": False, "comparable_ids": False})
    assert all(out[f"{k}_rel"] is None for k in RECALLS) and set(out["recall_by_band_rel"].values()) == {None}
    # Words and ids are samples of their own sizes: each ratio asks only whether its own sample is comparable.
    ids = {**ref, "rare_id_recall": 0.25}
    out = relative(row, {**ids, "comparable": True, "comparable_ids": False})
    assert out["rare_token_recall_rel"] == pytest.approx(0.25) and out["rare_id_recall_rel"] is None
    out = relative(row, {**ids, "comparable": False, "comparable_ids": True})
    assert out["rare_token_recall_rel"] is None and out["rare_id_recall_rel"] == pytest.approx(2.0)
    # A generation that wrote fewer words than the sample size: its recall is of a smaller sample, and would read
    # as a loss of the tail that is only a loss of words (the s7 case: 2 words against 13).
    sized = {**ids, "comparable": True, "comparable_ids": True, "eval_words": 13, "eval_tokens": 20}
    out = relative({**row, "eval_words": 2, "eval_tokens": 20}, sized)
    assert out["rare_token_recall_rel"] is None and set(out["recall_by_band_rel"].values()) == {None}
    assert out["rare_id_recall_rel"] == pytest.approx(2.0)
    out = relative({**row, "eval_words": 13, "eval_tokens": 3}, sized)
    assert out["rare_token_recall_rel"] == pytest.approx(0.25) and out["rare_id_recall_rel"] is None


def test_reference_with_fewer_tokens_than_eval_sample_tokens_is_not_comparable_for_ids(evaluator):
    _, tokenizer = evaluator
    # The held-out split holds 7 words and 9 tokens (with punctuation): enough words, too few tokens.
    cfg = load_config(None, ["data.source=local", "data.path=unused.txt", "eval.sample_words=7", "eval.sample_tokens=60",
                             "eval.rare_max_freq=0.25", "eval.heldout_docs=2"])
    said = []
    reference = Evaluator(cfg, tokenizer, ["the cat sat", "the dog ran far"],
                          ["The fox ran.", "Owls hoot at night!"]).reference(seed=0, say=said.append)
    assert reference["eval_words"] == 7 and reference["comparable"] is True
    assert reference["eval_tokens"] < 60 and reference["comparable_ids"] is False
    assert said == [f"note: the human reference has {reference['eval_tokens']} tokens, fewer than eval.sample_tokens=60; "
                    "rare_id_recall_rel is left null"]


@pytest.mark.parametrize("sample_words", [7, 8])  # the held-out split has 7 words
def test_evaluate_relative_recall_only_against_a_comparable_reference(evaluator, make_model, sample_words):
    _, tokenizer = evaluator
    cfg = load_config(None, ["data.source=local", "data.path=unused.txt", f"eval.sample_words={sample_words}",
                             "eval.rare_max_freq=0.25", "eval.heldout_docs=2"])  # threshold 1, as in evaluator
    ev = Evaluator(cfg, tokenizer, ["the cat sat", "the dog ran far"], ["The fox ran.", "Owls hoot at night!"])
    reference = ev.reference(seed=0)
    assert reference["comparable"] is (sample_words == 7)
    row = ev.evaluate(make_model(vocab=len(tokenizer)), ["the cat ran", "a dog sat far"], [Sample([0], [5], True)], seed=0)
    rel = {k: row[f"{k}_rel"] for k in RECALLS} | {f"band_{b}": v for b, v in row["recall_by_band_rel"].items()}
    assert len(rel) == len(RECALLS) + 3
    if sample_words == 8:  # too few words; the ids (eval.sample_tokens: 8 of the split's 9) are comparable
        assert reference["comparable_ids"] is True
        assert rel.pop("rare_id_recall") == pytest.approx(row["rare_id_recall"] / reference["rare_id_recall"])
        assert set(rel.values()) == {None}
    else:
        for k in RECALLS:
            assert rel[k] == (pytest.approx(row[k] / reference[k]) if reference[k] else None)
        for b, v in row["recall_by_band_rel"].items():
            human = reference["recall_by_band"][b]
            assert v == (pytest.approx(row["recall_by_band"][b] / human) if human else None)
        assert rel["rare_token_recall"] == pytest.approx(row["rare_token_recall"] / (1 / 5))  # the reference: "ran"


def test_reference_is_computed_once_per_seed(evaluator):
    ev, _ = evaluator
    first = ev.reference(seed=5)
    first["source"] = "changed by the caller"
    assert ev.reference(seed=5)["source"] == "held-out split"
    assert ev.reference(seed=5)["mean_doc_tokens"] > 0


def test_ratio_se_hand_computed():
    # Equal lengths: the SE of the mean. [1, 3]: sd sqrt(2), over sqrt(2) stories.
    assert ratio_se([1.0, 3.0], [1, 1]) == pytest.approx(1.0)
    # R = 6 / 4 = 1.5; residuals 2 - 1.5, 4 - 3, 0 - 1.5 = 0.5, 1, -1.5, squares summing to 3.5;
    # sqrt(3.5 / (3 * 2)) over the mean length 4 / 3.
    assert ratio_se([2.0, 4.0, 0.0], [1, 2, 1]) == pytest.approx(math.sqrt(3.5 / 6) * 3 / 4)
    assert ratio_se([2.0, 4.0], [1, 2]) == 0.0  # excess exactly proportional to length: no spread
    assert ratio_se([5.0], [10]) is None  # one story: no spread to measure


@pytest.fixture(scope="module")
def story_evaluator():
    world = StoryWorld()
    train = world.sample(300, 1)
    # 1.2e-4 of the ~28,000 training words: a rare threshold of count 3
    cfg = load_config(None, ["eval.sample_words=2000", "eval.truth_docs=6", "eval.rare_max_freq=0.00012"])
    tokenizer = train_tokenizer(train, 300)
    return Evaluator(cfg, tokenizer, train, world.sample(4, 2)), tokenizer


def test_the_training_split_is_encoded_only_when_its_ids_are_not_given(story_evaluator, monkeypatch):
    import testbed.metrics.suite as suite

    built, tokenizer = story_evaluator
    train = StoryWorld().sample(300, 1)
    encoded = []
    monkeypatch.setattr(suite, "encode", lambda tok, texts: encoded.append(len(texts)) or encode(tok, texts))
    cfg = load_config(None, ["eval.sample_words=2000", "eval.truth_docs=6", "eval.rare_max_freq=0.00012"])
    ev = Evaluator(cfg, tokenizer, train, StoryWorld().sample(4, 2), train_ids=encode(tokenizer, train))
    assert 300 not in encoded  # the held-out documents and the truth's, not the training split
    assert len(ev.rare_ids) > 0 and ev.rare_ids == built.rare_ids and all(type(i) is int for i in ev.rare_ids)
    assert np.array_equal(ev.id_band, built.id_band)
    assert (ev.human.counts, ev.human.rare_bigrams, ev.human.band_of) == (
        built.human.counts, built.human.rare_bigrams, built.human.band_of)
    assert ev.reference(5) == built.reference(5)


def test_storyworld_validity_figures(story_evaluator):
    ev, _ = story_evaluator
    story = StoryWorld().sample(1, 41)[0]
    toks = tokenize(story)
    hero = toks[toks.index("named") + 1]
    assert hero == "jake" and "tom" in BOY_NAMES  # another boy's name keeps the pronouns right
    first = story.index("Jake") + len("Jake")
    renamed = story[:first] + re.sub(r"\bJake\b", "Tom", story[first:])
    slip = toks.index(hero, toks.index("named") + 2)  # the hero's name, repeated: the first wrong token
    row = ev.corpus_metrics([story, renamed, "Once upon a time there"], seed=0)
    assert row["validity_rate"] == pytest.approx(1 / 3)
    assert row["grammar_rate"] == pytest.approx(2 / 3)
    # 1 for the true story; the renamed one up to its first repeat; "upon a time ," breaks at the comma (4 of 5)
    assert row["valid_prefix"] == pytest.approx((1 + slip / len(toks) + 4 / 5) / 3)
    ref = ev.reference(seed=0)
    assert ref["validity_rate"] == ref["grammar_rate"] == ref["valid_prefix"] == 1.0


def test_storyworld_excess_ce_and_its_standard_error(story_evaluator, make_model):
    ev, tokenizer = story_evaluator
    vocab = len(tokenizer)
    model = make_model(vocab=vocab)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # uniform: every predicted token costs ln(vocab)
    tokens = [len(ids) + 1 for ids in ev.truth_ids]
    excess = [n * math.log(vocab) - p for n, p in zip(tokens, ev.truth_nll)]
    row = ev.model_metrics(model)
    assert row["true_excess_ce"] == pytest.approx(sum(excess) / sum(tokens), rel=1e-5)
    assert row["true_excess_nats_per_story"] == pytest.approx(sum(excess) / 6, rel=1e-5)
    assert row["true_excess_ce_se"] == pytest.approx(ratio_se(excess, tokens), rel=1e-4)
    assert 0 < row["true_excess_ce_se"] < row["true_excess_ce"]
    assert row["true_excess_ce_known"] == row["true_excess_ce"]  # bpe: no story holds an unknown
    assert not any("true_excess_ce_known" in n for n in ev.notes)


def test_true_stories_with_a_word_the_tokenizer_never_saw_are_left_out_of_the_known_figure(make_model):
    """A word tokenizer built on a small split reads an unseen word of a true story as <|unk|>, and the excess is then
    the model's price for <|unk|>: ten nats and more for a model that never trained on one, next to nothing for one
    that did, so arms compared on true_excess_ce differ in that more than in fit (the data-constrained lab)."""
    world = StoryWorld()
    train = world.sample(200, 1)  # too few stories for the whole lexicon
    cfg = load_config(None, ["eval.sample_words=200", "eval.truth_docs=12", "tokenizer.kind=word"])
    tokenizer = train_tokenizer(train, 2048, "word")
    ev = Evaluator(cfg, tokenizer, train, world.sample(4, 2), truth_seed=3)
    unk = tokenizer.unk_token_id
    known = [i for i, d in enumerate(ev.truth_ids) if unk not in d]
    assert 0 < len(known) < 12  # some stories hold an unknown, some do not: both sides of the rule are tried
    assert [n for n in ev.notes if "true_excess_ce_known" in n] == [
        f"note: {12 - len(known)} of 12 true stories hold a word the tokenizer did not see in the training split "
        "(<|unk|>): true_excess_ce prices them by each model's guess at <|unk|>, which models trained on other text "
        "than this split (fresh human stories) learn and others do not; compare such arms on true_excess_ce_known"]
    vocab = len(tokenizer)
    model = make_model(vocab=vocab)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # uniform: every predicted token costs ln(vocab)
    excess = [(len(ids) + 1) * math.log(vocab) - p for ids, p in zip(ev.truth_ids, ev.truth_nll)]
    row = ev.model_metrics(model)
    by_hand = sum(excess[i] for i in known) / sum(len(ev.truth_ids[i]) + 1 for i in known)
    assert row["true_excess_ce_known"] == pytest.approx(by_hand, rel=1e-5)
    assert row["true_excess_ce_known"] != pytest.approx(row["true_excess_ce"], rel=1e-3)


def test_a_human_prompt_is_not_counted_as_what_the_model_wrote(story_evaluator, make_model):
    ev, tokenizer = story_evaluator
    stories = StoryWorld().sample(3, 43)
    ids = encode(tokenizer, stories)
    eos = tokenizer.eos_token_id
    prompted = [Sample([eos] + d[:8], d[8:], True) for d in ids]
    model = make_model(vocab=len(tokenizer))
    row = ev.evaluate(model, stories, prompted, seed=0)
    written = sum(len(words(tokenizer.decode(d[8:]))) for d in ids)
    assert row["eval_words"] == written < sum(len(words(s)) for s in stories)
    assert row["validity_rate"] == 1.0  # the grammar reads whole stories, prompt included
    unprompted = ev.evaluate(model, stories, [Sample([eos], d, True) for d in ids], seed=0)
    assert unprompted["eval_words"] == sum(len(words(s)) for s in stories)


class _Unigram(torch.nn.Module):
    """The same next-token logits at every position: each token's cost is known without a transformer."""

    def __init__(self, logits, context=64):
        super().__init__()
        self.config = SimpleNamespace(n_positions=context)
        self.logits = torch.nn.Parameter(torch.tensor(logits, dtype=torch.float32))

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.logits.expand(*input_ids.shape, -1))


def test_heldout_perplexity_by_band_against_a_hand_count():
    """A uniform model costs every token the same, so a test with one cannot tell the bands apart."""
    train, held = ["x x x y", "x z", "x w"], ["x y", "z z w", "q"]
    tok = train_tokenizer(train + ["q"], 100, kind="word")
    assert [tok.convert_ids_to_tokens(i) for i in range(len(tok))] == [
        "<|endoftext|>", "<|unk|>", "x", "Ġx", "q", "Ġw", "Ġy", "Ġz"]
    # By hand, over the training split: x 3, Ġx 2, Ġy Ġz Ġw 1 each, the end token 3 (one a document); 11 in all.
    # Rare: at most floor(0.2 x 11) = 2; common: the counts that cover half of 11, 3 + 3 (x and the end token);
    # an id the split never uses (<|unk|>, q) is rare.
    band = ["common", "rare", "common", "rare", "rare", "rare", "rare", "rare"]
    cfg = load_config(None, ["data.source=local", "data.path=unused.txt", "eval.sample_words=8",
                             "eval.rare_max_freq=0.2", "eval.heldout_docs=3"])
    ev = Evaluator(cfg, tok, train, held)
    assert [["rare", "middle", "common"][b] for b in ev.id_band] == band
    logits = [0.7 * (i % 5) - 1 for i in range(len(tok))]
    cost = [-math.log(math.exp(v) / sum(math.exp(w) for w in logits)) for v in logits]
    # Held-out targets: each document's tokens, then its end token: x Ġy | <|unk|> Ġz Ġw | q.
    targets = [2, 6, 0, 1, 7, 5, 0, 4, 0]
    assert [t for d in encode(tok, held) for t in [*d, 0]] == targets
    row = ev.model_metrics(_Unigram(logits))
    assert row["heldout_ppl"] == pytest.approx(math.exp(sum(cost[t] for t in targets) / 9), rel=1e-6)
    for name in ("rare", "common"):
        mine = [cost[t] for t in targets if band[t] == name]
        assert row[f"heldout_ppl_{name}"] == pytest.approx(math.exp(sum(mine) / len(mine)), rel=1e-6)
    assert row["heldout_ppl_middle"] is None  # no id of the split falls between the two
    assert row["heldout_ppl_rare"] == pytest.approx(12.6429, abs=1e-4)
    assert row["heldout_ppl_common"] == pytest.approx(27.3058, abs=1e-4)


def test_entropy_of_trigrams_by_hand():
    from testbed.metrics.diversity import ngram_entropy

    # a b a b a: trigrams aba, bab, aba: H(2/3, 1/3) bits
    assert ngram_entropy([["a", "b", "a", "b", "a"]], 3) == pytest.approx(
        -(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(1 / 3), rel=1e-9)


def test_gen0_ppl_scores_generation_0s_corpus_not_the_generations_own():
    train = ["x x x y", "x z", "x w"]
    tok = train_tokenizer(train, 100, kind="word")
    cfg = load_config(None, ["data.source=local", "data.path=unused.txt", "eval.sample_words=4"])
    ev = Evaluator(cfg, tok, train, train)
    logits = [0.9 * (i % 4) - 1 for i in range(len(tok))]
    cost = [-math.log(math.exp(v) / sum(math.exp(w) for w in logits)) for v in logits]
    own, first = ["x x", "x y"], ["x z z w", "x w"]

    def by_hand(texts):  # every token of every document, then its end token (id 0)
        targets = [t for d in encode(tok, texts) for t in [*d, 0]]
        return math.exp(sum(cost[t] for t in targets) / len(targets))
    eos = tok.eos_token_id
    samples = [Sample([eos], list(d), True) for d in encode(tok, own)]
    row = ev.evaluate(_Unigram(logits), own, samples, seed=0, gen0_texts=first)
    assert row["self_ppl"] == pytest.approx(by_hand(own), rel=1e-6)
    assert row["gen0_ppl"] == pytest.approx(by_hand(first), rel=1e-6)
    assert by_hand(own) != pytest.approx(by_hand(first), rel=1e-3)  # the two are told apart


def test_a_held_out_split_the_word_tokenizer_cannot_read_is_noted():
    """Text without spaces is one word a document: the training split's note stayed silent (its words are all in
    the vocabulary) while every held-out token was <|unk|> and heldout_ppl read 2.4 unremarked."""
    cfg = load_config(None, ["data.source=local", "data.path=unused.txt", "eval.sample_words=8"])
    train = ["the cat sat", "the dog ran far"]
    tokenizer = train_tokenizer(train, 300, "word")
    ev = Evaluator(cfg, tokenizer, train, ["猫が座った。", "the cat sat"])
    unk = tokenizer.unk_token_id
    share = float((ev.heldout.flat == unk).mean())
    assert 0.1 < share < 1
    assert [n for n in ev.notes if "held-out" in n] == [
        f"note: {share:.1%} of the held-out split's tokens are <|unk|> (words the training split lacks or the "
        "vocabulary left out): heldout_ppl prices them by each model's guess at <|unk|>, not by the words; use "
        "tokenizer.kind=bpe for open text"]
    assert not [n for n in Evaluator(cfg, tokenizer, train, ["the dog sat"]).notes if "held-out" in n]
