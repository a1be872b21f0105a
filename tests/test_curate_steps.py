import math
import os.path
import random
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch
from transformers import GPT2Config, WatermarkDetector, WatermarkingConfig

import testbed.curate
from testbed import TestbedError
from testbed.config import SampleConfig, load_config, to_yaml
from testbed.corpus.storyworld import StoryWorld
from testbed.curate import curator as curator_module
from testbed.curate.curator import Curator, summary
from testbed.curate.dedup import exact_keep, near_keep
from testbed.curate.detect import (NgramClassifier, detection_report, likelihood_ratio_scores, roc_auc,
                                   threshold_at_fpr, unigram_logprobs)
from testbed.curate.heuristics import heuristic_keep, non_alpha_share
from testbed.curate.perplexity import band_keep, mean_token_nll
from testbed.curate.step import Step
from testbed.curate.verify import get_verifier, verify_keep
from testbed.curate.watermark import GreenLists, make_processor, watermark_keep, watermark_z
from testbed.curate.whitelist import claimed_sources, whitelist_keep
from testbed.metrics.perplexity import document_nll
from testbed.mix import HUMAN, Doc
from testbed.model import load_model, save_model
from testbed.rundir import RunDir, write_jsonl
from testbed.sample import sample_corpus
from testbed.text import words

EOS = 0  # the conftest models' EOS id


# Letters only: testbed.text.words drops digits, so "w1" and "w2" would be one word.
WORDS = [a + b + c for a in "bcdfg" for b in "aeiou" for c in "klmnprstvxyz"]  # 300


def random_docs(vocab: list[str], n: int, length: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(vocab) for _ in range(length)) + "." for _ in range(n)]


# --- heuristics ------------------------------------------------------------------

def test_heuristics_defaults_keep_everything():
    texts = ["", "1 2 3", "a a a a a a", "A fine story."]
    assert heuristic_keep(texts, [False] * 4) == [True] * 4


def test_word_count_bounds_are_inclusive():
    texts = ["One, two... three!", "one two three four"]  # 3 and 4 words
    ended = [True, True]
    assert heuristic_keep(texts, ended, min_words=3) == [True, True]
    assert heuristic_keep(texts, ended, min_words=4) == [False, True]
    assert heuristic_keep(texts, ended, max_words=3) == [True, False]
    assert heuristic_keep(texts, ended, min_words=4, max_words=3) == [False, False]


def test_a_looping_document_is_dropped():
    # trigrams: (a b c) (b c a) (c a b) (a b c): one of 4 repeats an earlier one
    loop = "a b c a b c"
    fresh = "the fox ran to the river"
    long_loop = "the cat sat on the mat. " * 5
    assert heuristic_keep([loop, fresh, long_loop], [True] * 3, max_repeat=0.25) == [True, True, False]
    assert heuristic_keep([loop, fresh, long_loop], [True] * 3, max_repeat=0.2) == [False, True, False]


def test_a_numeric_document_is_dropped():
    assert non_alpha_share("ab1.") == 0.5  # whitespace does not count
    assert non_alpha_share("a b  1 .") == 0.5
    assert non_alpha_share("") == 1.0
    texts = ["1234 5678, 99.", "ab1.", "Plain words here.", ""]
    assert heuristic_keep(texts, [True] * 4, max_non_alpha=0.5) == [False, True, True, False]
    assert heuristic_keep(texts, [True] * 4, max_non_alpha=0.4) == [False, False, True, False]


def test_require_end_drops_documents_that_never_ended():
    texts = ["cut off in the mid", "a whole story."]
    assert heuristic_keep(texts, [False, True], require_end=True) == [False, True]
    assert heuristic_keep(texts, [False, True]) == [True, True]


def test_heuristics_check_alignment():
    with pytest.raises(ValueError):
        heuristic_keep(["a", "b"], [True])


# --- dedup ---------------------------------------------------------------------

def test_exact_dedup_ignores_case_and_whitespace_and_keeps_the_first_copy():
    texts = ["Once upon a time.", "A dog.", "once  upon a\nTIME.", "Once upon a time!", " Once upon a time. "]
    assert exact_keep(texts) == [True, True, False, True, False]


def test_near_dedup_drops_a_one_word_edit_and_keeps_distinct_docs():
    a, b, c = random_docs(WORDS, 3, 60, seed=0)
    edited = a.split()
    edited[2] = "changed"  # touches 3 of 56 five-word shingles: Jaccard 53/59 = 0.90
    texts = [a, b, " ".join(edited), c, a.upper()]
    assert near_keep(texts, threshold=0.8) == [True, True, False, True, False]
    # Raised past the pair's similarity, the edit is a document of its own.
    assert near_keep(texts, threshold=0.95) == [True, True, True, True, False]


def test_near_dedup_keeps_the_first_of_a_near_pair():
    a = random_docs(WORDS, 1, 60, seed=1)[0]
    edited = a.replace(a.split()[-1], "tail")
    assert near_keep([edited, a]) == [True, False]


def test_near_dedup_short_documents_are_one_shingle():
    assert near_keep(["a cat", "A cat!", "a dog", ""]) == [True, False, True, True]


def test_near_dedup_finds_nearly_every_one_word_edit():
    # One word changed in a ~90-word story: Jaccard about 0.89, so LSH banded
    # for a 0.8 threshold with equal weights on misses and false candidates
    # never proposes about one pair in ten (19 of these 200 slipped through).
    stories = StoryWorld().sample(300, 0)
    edited = [s.replace(" the ", " a ", 1) for s in stories[:200]]
    keep = near_keep(stories + edited, threshold=0.8)
    assert keep[:300] == [True] * 300
    assert sum(keep[300:]) <= 2


def test_near_dedup_names_the_keys_when_lsh_cannot_band():
    with pytest.raises(TestbedError, match=r"curate\.dedup\.threshold=0\.999 with curate\.dedup\.num_perm=128"):
        near_keep(["a b c"], threshold=0.999)


def test_dedup_keeps_every_distinct_story():
    stories = StoryWorld().sample(200, 0)
    distinct = exact_keep(stories)
    assert sum(near_keep([s for s, k in zip(stories, distinct) if k], threshold=0.95)) == sum(distinct)


# --- verifiers -------------------------------------------------------------------

def test_storyworld_verifier_accepts_its_stories_and_rejects_a_mutation():
    verifier = get_verifier("storyworld", [])
    stories = StoryWorld().sample(5, 0)
    assert verify_keep(verifier, stories) == [True] * 5
    mutated = [stories[0].replace(" ", " zorblax ", 1), stories[1].rstrip(".!?\"' ") + " and"]
    assert verify_keep(verifier, mutated) == [False, False]


def test_lenient_storyworld_verifier_passes_a_changed_name_that_the_grammar_rejects():
    strict, lenient = get_verifier("storyworld", []), get_verifier("storyworld_lenient", [])
    story = ('Once there was a sweet boy named Sam. He liked to eat rice with his baby. One day, he went to the farm. '
             'There, he met a slimy dog named Biscuit. Sam whispered, "Hi, Biscuit! Let\'s go to the bakery together!" '
             'Biscuit said, "Yes, I would love to!" But then, it started to drizzle. Sam felt very angry. '
             'Biscuit helped him fix the magnet. Sam felt happy again. Sam and Biscuit baked together all morning long. '
             'The end.')
    changed = story.replace("Sam felt happy", "Tom felt happy")  # the hero's name changes between mentions
    assert strict(story) and lenient(story) and lenient(changed) and not strict(changed)
    assert not lenient(story.replace(" ", " zorblax ", 1))


def test_lexicon_verifier():
    verifier = get_verifier("lexicon", ["The cat sat.", "A dog didn't run!"])
    assert verify_keep(verifier, [
        "the dog sat.",  # known words, ends a sentence
        'A cat didn\'t sit."',  # "sit" is not in the human text
        "The cat sat",  # no final punctuation
        '"A dog sat!"  ',  # quote and trailing space are fine
        "...",  # no words at all
        "The Dog didn't.",  # case does not matter
    ]) == [True, False, False, True, False, True]


def test_a_verifier_loads_from_module_and_function():
    verifier = get_verifier("os.path:isabs", ["/probe"])
    assert verify_keep(verifier, ["/abs", "rel"]) == [True, False] == [os.path.isabs(t) for t in ("/abs", "rel")]


@pytest.mark.parametrize("name, fix", [("no_such_module_xyz:check", "PYTHONPATH"),
                                       ("os.path:no_such_function", r"package\.module:function"),
                                       ("os:sep", r"package\.module:function")])
def test_a_verifier_that_does_not_load_names_the_value_and_the_fix(name, fix):
    with pytest.raises(TestbedError, match=rf"'{name}'.*{fix}"):
        get_verifier(name, [])


@pytest.mark.parametrize("name", ["grammar", "os.path:", ":isabs"])
def test_an_unknown_verifier_lists_the_choices(name):
    with pytest.raises(TestbedError, match=r"storyworld, storyworld_lenient, lexicon, package\.module:function"):
        get_verifier(name, [])


# --- whitelist -------------------------------------------------------------------

def test_whitelist_drops_exactly_the_unlisted_sources():
    labels = ["human", "synthetic:gen_001", "synthetic:gen_002", "human"]
    assert whitelist_keep(labels, ["human"]) == [True, False, False, True]
    assert whitelist_keep(labels, ["synthetic"]) == [False, True, True, False]
    assert whitelist_keep(labels, ["synthetic:gen_001"]) == [False, True, False, False]
    assert whitelist_keep(labels, ["synth", "hum"]) == [False] * 4  # a prefix alone is not a source
    assert whitelist_keep(labels, []) == [False] * 4


def test_no_mislabelling_changes_nothing():
    labels = ["human", "synthetic:gen_003"] * 5
    claimed = claimed_sources(labels, 0.0, seed=0)
    assert claimed == labels and claimed is not labels


def test_mislabelling_flips_exactly_the_share_deterministically():
    labels = ["human"] * 20 + ["synthetic:gen_003"] * 20
    claimed = claimed_sources(labels, 0.25, seed=0)
    flipped = [i for i, (a, b) in enumerate(zip(labels, claimed)) if a != b]
    assert len(flipped) == 10
    for i in flipped:
        assert claimed[i] == ("synthetic:gen_003" if labels[i] == "human" else "human")
    assert claimed_sources(labels, 0.25, seed=0) == claimed
    assert claimed_sources(labels, 0.25, seed=1) != claimed
    assert labels == ["human"] * 20 + ["synthetic:gen_003"] * 20  # not mutated


def test_mislabelled_human_text_claims_a_synthetic_source_present():
    claimed = claimed_sources(["human"] * 4, 0.5, seed=0)
    assert sorted(claimed) == ["human", "human", "synthetic", "synthetic"]
    labels = ["human"] * 30 + ["synthetic:gen_001", "synthetic:gen_002"]
    claimed = claimed_sources(labels, 1.0, seed=0)
    assert set(claimed[:30]) <= {"synthetic:gen_001", "synthetic:gen_002"}
    assert claimed[30:] == ["human", "human"]


# --- detectors -------------------------------------------------------------------

CATS = "cat cats kitten purr whiskers milk mouse fur paw meow nap sofa yarn tail claw".split()
ROCKETS = "rocket launch orbit fuel engine thrust booster payload moon countdown pad stage nozzle".split()


def test_classifier_separates_disjoint_vocabularies_on_held_out_text():
    human = random_docs(CATS, 70, 30, seed=0)
    synthetic = random_docs(ROCKETS, 70, 30, seed=1)
    clf = NgramClassifier().fit(human[:50], synthetic[:50])
    scores = clf.score(human[50:] + synthetic[50:])
    assert max(scores[:20]) < 0.5 < min(scores[20:])
    assert roc_auc([False] * 20 + [True] * 20, scores) == 1.0
    refit = NgramClassifier().fit(human[:50], synthetic[:50])
    assert refit.score(human[50:]) == pytest.approx(scores[:20], rel=1e-6)  # rounding varies with the batch


def test_classifier_learns_word_order_from_bigrams():
    # Same words, same counts: only the bigrams differ.
    human = ["the cat chased the dog."] * 20
    synthetic = ["the dog chased the cat."] * 20
    clf = NgramClassifier().fit(human, synthetic)
    low, high = clf.score(["the cat chased the dog.", "the dog chased the cat."])
    assert low < 0.5 < high


def test_detection_report_by_hand():
    truth = [True, True, False, False, True]
    scores = [0.9, 0.4, 0.4, 0.1, 0.7]
    flagged = [True, False, True, False, True]
    report = detection_report(truth, flagged, scores)
    # Synthetic over human pairs: 0.9 beats both, 0.7 beats both, 0.4 ties one
    # human 0.4 (a half) and beats 0.1: 5.5 of 6.
    assert report == {"precision": 2 / 3, "recall": 2 / 3, "roc_auc": pytest.approx(5.5 / 6),
                      "flagged": 3, "synthetic_slipped": 1}


def test_roc_auc_by_hand():
    assert roc_auc([False, True], [0.2, 0.8]) == 1.0
    assert roc_auc([True, False], [0.2, 0.8]) == 0.0
    assert roc_auc([True, False, True, False], [1.0, 1.0, 1.0, 1.0]) == 0.5
    # positives 3, 2; negatives 2, 1: pairs (3>2, 3>1, 2=2, 2>1) = 3.5 of 4
    assert roc_auc([True, True, False, False], [3.0, 2.0, 2.0, 1.0]) == 3.5 / 4


def test_detection_report_nan_where_there_is_no_share():
    report = detection_report([True, True], [False, False], [0.1, 0.2])
    assert math.isnan(report["precision"]) and math.isnan(report["roc_auc"])
    assert report["recall"] == 0.0 and report["synthetic_slipped"] == 2
    assert math.isnan(detection_report([False], [True], [0.3])["recall"])


def test_threshold_at_fpr_by_hand():
    human = [0.1, 0.5, 0.3, 0.9, 0.7]
    assert threshold_at_fpr(human, 0.2) == 0.7  # only 0.9 lies above
    assert threshold_at_fpr(human, 0.39) == 0.7
    assert threshold_at_fpr(human, 0.4) == 0.5
    assert threshold_at_fpr(human, 0.0) == 0.9
    assert threshold_at_fpr(human, 1.0) == -math.inf
    # Ties: no threshold below 1 flags only one of four, so 1 it is.
    assert threshold_at_fpr([1.0, 1.0, 1.0, 2.0], 0.5) == 1.0
    assert threshold_at_fpr([float(i) for i in range(100)], 0.29) == 70.0  # 29 above 70


def test_unigram_logprobs_by_hand():
    # counts with one EOS per document: eos 2, token 1: 2, token 2: 1, token 3: 1; +1 each over 6 + 4
    logp = unigram_logprobs([[1, 1, 2], [3]], vocab_size=4, eos_id=0)
    assert logp == pytest.approx([math.log(0.3), math.log(0.3), math.log(0.2), math.log(0.2)])


def test_likelihood_ratio_against_a_uniform_model_by_hand(make_model):
    model = make_model()
    with torch.no_grad():
        model.lm_head.weight.zero_()  # every logit 0: p = 1/64 for every token
    background = [math.log(0.5)] + [math.log(0.5 / 63)] * 63
    scores = likelihood_ratio_scores(model, [[3, 3, 3], [5]], background, EOS)
    # mean over the predicted tokens (the document, then its EOS)
    assert scores == pytest.approx([
        -math.log(64) - (3 * math.log(0.5 / 63) + math.log(0.5)) / 4,
        -math.log(64) - (math.log(0.5 / 63) + math.log(0.5)) / 2])


def test_likelihood_ratio_scores_text_the_model_favours_higher(make_model):
    model = make_model()
    handle = model.lm_head.register_forward_hook(lambda mod, args, out: out + 6.0 * (torch.arange(64) == 7))
    try:
        favoured = [[7] * 12 for _ in range(4)]
        other = [[9] * 12 for _ in range(4)]
        background = unigram_logprobs(favoured + other, 64, EOS)  # 7 and 9 equally frequent
        scores = likelihood_ratio_scores(model, favoured + other, background, EOS, batch_size=3)
    finally:
        handle.remove()
    assert min(scores[:4]) > max(scores[4:])


def detector_run(tmp_path, make_model, *overrides):
    """A curator over a two-generation run dir: gen_000 wrote rocket stories, gen_001 (the pool's writer) nonsense words.
    gen_000's last 4 stories ran into the length cap (ended: false), as unfinished samples do."""
    cfg = load_config(None, ["curate.detector.enabled=true", "curate.detector.train_docs=20", "mix.regime=anchor",
                             "mix.anchor_set=fresh", *overrides])
    corpora = {0: random_docs(ROCKETS, 34, 20, seed=2), 1: random_docs(WORDS, 30, 20, seed=3)}
    for g, texts in corpora.items():
        save_model(make_model(seed=g), tmp_path / f"gen_{g:03d}" / "model")
        write_jsonl(tmp_path / f"gen_{g:03d}" / "corpus.jsonl",
                    ({"text": t, "ended": not (g == 0 and i >= 30)} for i, t in enumerate(texts)))
        (tmp_path / f"gen_{g:03d}" / "DONE").write_text("")
    corpora[0] = corpora[0][:30]  # what the mix keeps of it (mix.keep_unfinished: false)
    rng = random.Random(0)
    doc = lambda text: Doc([rng.randrange(1, 64) for _ in range(12)], text)  # noqa: E731
    human = [doc(t) for t in random_docs(CATS, 60, 20, seed=4)]
    written = {g: [doc(t) for t in texts] for g, texts in corpora.items()}
    curator = Curator(cfg, human, 64, EOS, RunDir(tmp_path))
    return curator, human, written


@pytest.mark.parametrize("train_on, trained_on", [("earlier", 0), ("writer", 1)])
def test_classifier_learns_from_the_model_train_on_names(tmp_path, make_model, monkeypatch, train_on, trained_on):
    # train_docs above what lies outside the pool: it learns from all of it, so what it excluded shows.
    curator, human, written = detector_run(tmp_path, make_model, f"curate.detector.train_on={train_on}",
                                           "curate.detector.train_docs=40")
    fits = []
    fit = NgramClassifier.fit
    monkeypatch.setattr(NgramClassifier, "fit", lambda self, h, s: fits.append((h, s)) or fit(self, h, s))
    # Generation 2's pool: model 1's text and human text, plus copies (other objects, the same text) of one of
    # model 0's stories (as accumulate would hold), of one model 1 wrote twice and of one human story: none may be
    # learned from, since the detector would then score text it was trained on.
    copies = [("synthetic:gen_000", Doc([1], written[0][0].text)), ("synthetic:gen_001", Doc([1], written[1][25].text)),
              (HUMAN, Doc([1], human[40].text))]
    pool = [(HUMAN, d) for d in human[:30]] + [("synthetic:gen_001", d) for d in written[1][:20]] + copies
    _, (report,) = curator(2, pool, written[1])
    ((learned_human, synthetic),) = fits
    expected = {0: {d.text for d in written[0][1:]}, 1: {d.text for d in written[1][20:25] + written[1][26:]}}[trained_on]
    assert sorted(synthetic) == sorted(expected)
    assert sorted(learned_human) == sorted(d.text for d in human[30:40] + human[41:])
    assert report["detector_model"] == f"gen_{trained_on:03d}" and report["in_distribution"] == (train_on == "writer")
    assert summary(len(pool), pool, [report])["detector_in_distribution"] == (train_on == "writer")


@pytest.mark.parametrize("train_on, g, scored_with, in_distribution", [
    ("earlier", 2, 0, False), ("writer", 2, 1, True),
    ("earlier", 1, 0, True),  # the writer is model 0 and no earlier one exists
])
def test_likelihood_detector_scores_with_the_model_train_on_names(tmp_path, make_model, monkeypatch, train_on, g,
                                                                    scored_with, in_distribution):
    curator, human, written = detector_run(tmp_path, make_model, "curate.detector.kind=likelihood",
                                           f"curate.detector.train_on={train_on}")
    loaded = []
    monkeypatch.setattr(curator_module, "load_model", lambda path, device: loaded.append(path) or load_model(path, device))
    pool = [(HUMAN, d) for d in human[:30]] + [(f"synthetic:gen_{g - 1:03d}", d) for d in written[g - 1][:20]]
    _, (report,) = curator(g, pool, written[g - 1])
    assert loaded == [tmp_path / f"gen_{scored_with:03d}" / "model"]
    assert report["detector_model"] == f"gen_{scored_with:03d}" and report["in_distribution"] is in_distribution


# --- watermark -------------------------------------------------------------------

def test_green_lists_return_the_processors_logits_bit_for_bit():
    """Over calls that bring new and already seen previous tokens, past the table's first room of 64 rows."""
    processor, green = make_processor(300, "cpu", gamma=0.25, delta=2.5), GreenLists(300, "cpu", gamma=0.25, delta=2.5)
    draws = torch.Generator().manual_seed(0)
    seen = set()
    for batch in (8, 40, 40, 64, 3):
        last = torch.randint(0, 120, (batch, 2), generator=draws)  # the processor reads the last column only
        logits = torch.randn(batch, 300, generator=draws) * 5
        logits[0, :10] = float("-inf")  # truncated tokens stay truncated
        assert torch.equal(green(last, logits), processor(last, logits))
        seen |= set(last[:, -1].tolist())
    assert green.rows == len(seen) and len(green.table) >= 64


def test_sample_watermark_writes_what_the_processor_would(make_model):
    model = make_model(seed=4)
    cfg = SampleConfig(size=24, batch_size=8, max_new_tokens=20)
    cfg.watermark.enabled, cfg.watermark.delta = True, 3.0
    assert sample_corpus(model, cfg, EOS, seed=1) == sample_corpus(
        model, cfg, EOS, seed=1, watermark=make_processor(64, "cpu", cfg.watermark.gamma, 3.0, cfg.watermark.key))


def test_watermark_is_detected_in_watermarked_samples_only(make_model, eos_bias):
    model = make_model(context=80)  # random weights: a near-uniform, high-entropy model
    eos_bias(model, -100.0)  # every document runs to max_new_tokens
    cfg = SampleConfig(size=40, batch_size=40, max_new_tokens=64)
    marked = sample_corpus(model, cfg, EOS, seed=0, watermark=make_processor(64, "cpu", gamma=0.25, delta=4.0))
    plain = sample_corpus(model, cfg, EOS, seed=0)
    assert all(len(s.tokens) == 64 for s in marked + plain)
    z_marked = watermark_z([s.tokens for s in marked], 64, EOS, gamma=0.25)
    z_plain = watermark_z([s.tokens for s in plain], 64, EOS, gamma=0.25)
    assert sum(z > 4.0 for z in z_marked) >= 36
    assert sum(z > 4.0 for z in z_plain) <= 4
    assert watermark_keep(z_marked + z_plain, 4.0) == [z <= 4.0 for z in z_marked + z_plain]
    # Another key draws other green lists: the watermark is not there.
    z_other_key = watermark_z([s.tokens for s in marked], 64, EOS, gamma=0.25, key=7)
    assert sum(z > 4.0 for z in z_other_key) <= 4


def test_the_detector_never_learns_a_pool_document_an_earlier_step_removed_or_its_respelling(tmp_path, monkeypatch):
    """Model g-1 wrote one story twice, once shouted: exact dedup (case folded) dropped the copy from the pool, and the
    classifier then learned it as outside the pool, with the features of the story it went on to score."""
    cats = "cat cats kitten purr whiskers milk mouse fur paw meow nap sofa yarn tail claw".split()
    rockets = "rocket launch orbit fuel engine thrust booster payload moon countdown pad stage nozzle".split()

    def stories(vocab, n, seed):
        rng = random.Random(seed)
        return [" ".join(rng.choice(vocab) for _ in range(20)) + "." for _ in range(n)]
    cfg = load_config(None, ["curate.dedup.exact=true", "curate.detector.enabled=true", "curate.detector.train_docs=50",
                             "mix.regime=anchor", "mix.anchor_set=fresh"])
    curator = Curator(cfg, [Doc([1], t) for t in stories(cats, 40, 0)], 64, EOS, RunDir(tmp_path))
    newest = [Doc([1], t) for t in stories(rockets, 20, 1)]
    shouted = Doc([1], "  " + newest[0].text.upper())
    respelled = Doc([1], newest[1].text.replace(" ", ",  "))  # outside the pool, the features of one inside it
    newest += [shouted, respelled]
    pool = [(HUMAN, Doc([1], t)) for t in stories(cats, 5, 5)] + [("synthetic:gen_000", d) for d in newest[:2]]
    pool.append(("synthetic:gen_000", shouted))
    learned = []
    fit = NgramClassifier.fit
    monkeypatch.setattr(NgramClassifier, "fit", lambda self, human, synthetic: learned.append(synthetic) or
                        fit(self, human, synthetic))
    _, reports = curator(1, pool, newest)
    assert [r["step"] for r in reports] == ["dedup_exact", "detector"] and reports[0]["removed_synthetic"] == 1
    assert shouted.text not in learned[0] and respelled.text not in learned[0]
    assert len(learned[0]) == len(newest) - 4  # the two stories in the pool, the shouted copy and the respelling


def test_watermark_z_matches_transformers_detector():
    rng = random.Random(0)
    docs = [[rng.randrange(1, 64) for _ in range(n)] for n in (2, 5, 5, 17, 40)]
    z = watermark_z(docs, 64, EOS)
    config = GPT2Config(vocab_size=64, bos_token_id=EOS, eos_token_id=EOS)
    detector = WatermarkDetector(config, "cpu", WatermarkingConfig(seeding_scheme="lefthash", context_width=1))
    # The stock detector drops the leading BOS (= EOS): give it the EOS context twice.
    expected = [float(detector(torch.tensor([[EOS, EOS] + d]), return_dict=True).z_score[0]) for d in docs]
    assert z == pytest.approx(expected)
    # By hand, for the first: its 2 tokens are scored, (green - 2 * 0.25) / sqrt(2 * 0.25 * 0.75)
    out = detector(torch.tensor([[EOS, EOS] + docs[0]]), return_dict=True)
    assert out.num_tokens_scored[0] == 2
    assert z[0] == pytest.approx((out.num_green_tokens[0] - 0.5) / math.sqrt(2 * 0.1875))


def test_watermark_z_is_zero_for_documents_too_short_to_test():
    assert watermark_z([[], [5], [5, 6]], 64, EOS)[:2] == [0.0, 0.0]


def test_curation_scores_views_of_encoded_ids_as_lists(as_ids, make_model):
    rng = random.Random(1)
    docs = [[rng.randrange(1, 64) for _ in range(n)] for n in (0, 1, 2, 7, 30)]
    views, model = as_ids(docs), make_model()
    assert watermark_z(views, 64, EOS) == watermark_z(docs, 64, EOS)
    background = unigram_logprobs(docs, 64, EOS)
    assert unigram_logprobs(views, 64, EOS) == background
    assert likelihood_ratio_scores(model, views, background, EOS) == likelihood_ratio_scores(model, docs, background, EOS)
    assert mean_token_nll(model, views, EOS) == mean_token_nll(model, docs, EOS)


def test_watermark_keep_drops_what_passes_the_threshold():
    assert watermark_keep([-1.0, 4.0, 4.1, 12.0], 4.0) == [True, True, False, False]


# --- perplexity band ---------------------------------------------------------------

SCORES = [5.0, 1.0, 3.0, 9.0, 7.0, 2.0, 8.0, 4.0, 6.0, 0.5]  # ascending: docs 9 1 5 2 7 0 8 4 6 3


@pytest.mark.parametrize("low, high, kept", [
    (0.0, 1.0, list(range(10))),
    (0.0, 0.7, [0, 1, 2, 5, 7, 8, 9]),  # drops the 3 least likely: 7.0, 8.0, 9.0
    (0.2, 0.7, [0, 2, 5, 7, 8]),  # also drops the 2 most likely: 0.5, 1.0
    (0.15, 0.25, [5]),  # 1.5 and 2.5 round up: rank 2 alone
    (0.5, 0.5, []),
])
def test_band_keep_by_hand(low, high, kept):
    keep = band_keep(SCORES, low, high)
    assert [i for i, k in enumerate(keep) if k] == kept


def test_band_keep_breaks_ties_by_position():
    assert band_keep([1.0, 1.0, 1.0, 1.0], 0.0, 0.5) == [True, True, False, False]
    with pytest.raises(ValueError):
        band_keep(SCORES, 0.8, 0.2)


def test_mean_token_nll_divides_by_predicted_tokens(make_model):
    model = make_model()
    docs = [[3, 4, 5], [6]]
    total = document_nll(model, docs, EOS)
    assert mean_token_nll(model, docs, EOS) == pytest.approx([total[0] / 4, total[1] / 2])


# --- the step registry -------------------------------------------------------------

@dataclass
class BanConfig:
    enabled: bool = False
    word: str = "dragon"

    def validate(self, cfg):
        if words(self.word) != [self.word]:
            raise TestbedError(f"curate.ban.word={self.word!r} must be one lower-case word")


class Ban(Step):
    """Drops the documents that use a word: a step that exists only in this test."""
    name = section = "ban"
    Config = BanConfig

    def keep(self, g, pool, newest):
        return [self.c.word not in words(d.text) for _, d in pool], {"word": self.c.word}


def test_a_step_registered_from_a_test_gets_its_keys_and_runs_in_its_place(tmp_path, monkeypatch):
    shipped = testbed.curate.STEPS
    monkeypatch.setattr(testbed.curate, "STEPS", [*shipped[:2], Ban, *shipped[2:]])  # after heuristics
    cfg = load_config(None, ["curate.heuristics.enabled=true", "curate.heuristics.min_words=2",
                             "curate.ban.enabled=true", "curate.ban.word=rocket", "curate.dedup.exact=true"])
    assert cfg.curate.ban == BanConfig(enabled=True, word="rocket")
    assert "  ban:\n    enabled: true\n    word: rocket\n" in to_yaml(cfg)
    with pytest.raises(TestbedError, match="curate.ban.word='two words' must be one lower-case word"):
        load_config(None, ["curate.ban.word=two words"])
    with pytest.raises(TestbedError, match=r"unknown config key curate.ban.wrd \(did you mean curate.ban.word\?\)"):
        load_config(None, ["curate.ban.wrd=x"])

    synthetic = "synthetic:gen_000"
    texts = [(HUMAN, "A rocket launch."), (synthetic, "Rocket!"), (synthetic, "the rocket flew"),
             (HUMAN, "the cat sat"), (synthetic, "The  cat sat"), (synthetic, "a rocketship")]
    pool = [(label, Doc([1], text)) for label, text in texts]
    curator = Curator(cfg, [], 64, EOS, RunDir(tmp_path))
    assert curator.steps() == ["heuristics", "ban", "dedup_exact"]
    kept, reports = curator(1, pool, [])
    assert [d.text for _, d in kept] == ["the cat sat", "a rocketship"]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in reports] == [
        {"step": "heuristics", "docs_in": 6, "docs_out": 5, "removed_human": 0, "removed_synthetic": 1},
        {"step": "ban", "docs_in": 5, "docs_out": 3, "removed_human": 1, "removed_synthetic": 1, "word": "rocket"},
        {"step": "dedup_exact", "docs_in": 3, "docs_out": 2, "removed_human": 0, "removed_synthetic": 1}]
    off = load_config(None, ["curate.dedup.exact=true"])
    assert Curator(off, [], 64, EOS, RunDir(tmp_path)).steps() == ["dedup_exact"]

    monkeypatch.undo()  # unregistered, its keys are gone with it
    with pytest.raises(TestbedError, match="unknown config key curate.ban"):
        load_config(None, ["curate.ban.enabled=true"])


class Short(Ban):
    """A step whose keep() gets the pool's length wrong, or forgets its figures."""
    name = section = "ban"

    def keep(self, g, pool, newest):
        flags, figures = super().keep(g, pool, newest)
        return (flags[:-1], figures) if self.c.word == "short" else flags


@pytest.mark.parametrize("word, message", [
    ("short", r"^curation step 'ban': keep\(\) returned 2 flags for a pool of 3 documents; it returns one per document$"),
    ("bare", r"^curation step 'ban': keep\(\) returned list; it returns \(flags, figures\): one bool per pool "
             r"document, and a dict \(empty if it adds none\)$"),
])
def test_a_step_whose_keep_does_not_answer_for_every_document_is_refused(tmp_path, monkeypatch, word, message):
    # Zipped with the pool, a short answer would drop the documents past its end unreported.
    monkeypatch.setattr(testbed.curate, "STEPS", [*testbed.curate.STEPS, Short])
    cfg = load_config(None, ["curate.ban.enabled=true", f"curate.ban.word={word}"])
    pool = [(HUMAN, Doc([1], text)) for text in ("a cat", "a dog", "a fox")]
    with pytest.raises(TestbedError, match=message):
        Curator(cfg, [], 64, EOS, RunDir(tmp_path))(1, pool, [])


def test_the_config_layer_loads_no_step_machinery():
    # testbed.config imports every step file for its keys: their heavy imports wait until a step runs.
    heavy = ("torch", "transformers", "datasketch", "sklearn", "sacrebleu")
    code = f"import sys, testbed.config; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@dataclass
class NoSwitch:
    word: str = ""

    def validate(self, cfg):
        pass


@dataclass
class NoCheck:
    enabled: bool = False


def step(class_name, **attributes):
    return type(class_name, (Ban,), {"name": class_name.lower(), "section": class_name.lower(), **attributes})


@pytest.mark.parametrize("broken, why", [
    (step("Switchless", Config=NoSwitch), "its Config has no enabled field"),
    (step("Unchecked", Config=NoCheck), r"its Config has no validate\(self, cfg\)"),
    (step("Plain", Config=dict), "its Config is not a dataclass"),
    (step("Nameless", name=None), "sets no name"),
    (step("Twin", name="heuristics"), "name 'heuristics' is another step's"),
    (step("Rival", section="heuristics"), "shares curate.heuristics with a step whose Config is another class"),
    (object, "is not a subclass of testbed.curate.step.Step"),
])
def test_a_step_missing_what_the_config_and_curator_read_is_refused_with_what_it_lacks(monkeypatch, broken, why):
    # Without the check each gave an AttributeError on every config load or run, curation on or off, or (a section
    # shared with another Config) silently took the other step's keys away.
    monkeypatch.setattr(testbed.curate, "STEPS", [*testbed.curate.STEPS, broken])
    with pytest.raises(TypeError, match=f"^curation step '{getattr(broken, '__name__', broken)}': {why}"):
        load_config(None, [])


def test_a_step_with_its_own_enabled_needs_no_enabled_field(monkeypatch):
    monkeypatch.setattr(testbed.curate, "STEPS", [*testbed.curate.STEPS, step("Always", Config=NoSwitch,
                                                                               enabled=staticmethod(lambda c: True))])
    assert load_config(None, []).curate.always == NoSwitch()
