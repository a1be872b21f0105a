"""Detectors: tell synthetic text from human text in a contaminated pool.

Two kinds, as in the literature. A supervised classifier learns the
difference from labelled examples of both (here: hashed word n-grams and a
logistic regression, the classic strong baseline). A zero-shot detector needs
no synthetic examples: text a model wrote is unusually likely under that
model, so the score is how much more likely the model finds a document than
plain word frequencies do (a likelihood ratio, which cancels the part of the
likelihood that only reflects common words).

Either is strongest against the model it was built on; a lab's detector was
built on other, older models, so the curator picks which model's text and
weights a detector gets (curate.detector.train_on).
"""
import math
import random
from dataclasses import dataclass
from typing import Literal

from testbed import TestbedError, gen_name
from testbed.curate.step import Step, at_least, share
from testbed.text import words

BUCKETS = 2 ** 18


@dataclass
class DetectorConfig:
    enabled: bool = False
    # classifier: logistic regression on word 1-2 grams, trained each generation
    # on labelled human and synthetic documents from outside the pool;
    # likelihood: zero-shot, a model's log-likelihood over a human unigram model's.
    kind: Literal["classifier", "likelihood"] = "classifier"
    # The model whose text the classifier learns as synthetic, or that the
    # likelihood detector scores with. earlier: for the pool model g-1 wrote,
    # model g-2, as a lab's detector is built on models older than the one
    # writing the web (g=1 has no earlier model: the writer, reported as
    # in-distribution); writer: model g-1 itself, in-distribution, an upper bound.
    train_on: Literal["earlier", "writer"] = "earlier"
    train_docs: int = 500  # labelled documents per class
    threshold: float = 0.5  # classifier: flag when P(synthetic) exceeds it
    fpr: float = 0.05  # likelihood: flag above the score that this share of labelled human text exceeds

    def validate(self, cfg) -> None:
        at_least("curate.detector.train_docs", self.train_docs, 2)
        share("curate.detector.threshold", self.threshold)
        share("curate.detector.fpr", self.fpr)
        # The other kind's key is never read: a run would go ahead at a cut-off the user did not choose.
        unused = {"classifier": ("fpr", self.fpr, DetectorConfig.fpr, "threshold"),
                  "likelihood": ("threshold", self.threshold, DetectorConfig.threshold, "fpr")}[self.kind]
        if unused[1] != unused[2]:
            raise TestbedError(f"curate.detector.{unused[0]}={unused[1]} is read by curate.detector.kind="
                               f"{'likelihood' if self.kind == 'classifier' else 'classifier'} only, and kind="
                               f"{self.kind} cuts at curate.detector.{unused[3]}: set that instead, or change the kind")
        mix = cfg.mix
        # It learns from labelled text left out of the pool; these pools take all of it, and the run would stop at
        # generation 1, after training generation 0, in a folder the corrected config could not resume.
        if self.enabled and mix.size == "grow" and (mix.regime == "accumulate" or
                                                    (mix.regime == "replace" and self.kind == "classifier")):
            what = "human text" if mix.regime == "accumulate" else "model text"
            raise TestbedError(f"curate.detector learns from {what} left out of the pool, and mix.regime={mix.regime} "
                               "with mix.size=grow leaves none: use mix.regime=anchor with mix.anchor_set=fresh (a "
                               "contaminated pool, see configs/strategies/detector.yaml)"
                               + (", or curate.detector.kind=likelihood" if mix.regime == "replace" else ""))


def ngrams(text: str) -> list[str]:
    """The word unigrams and bigrams of a text."""
    w = words(text)
    return w + [a + " " + b for a, b in zip(w, w[1:])]


def seen_as(text: str) -> str:
    """A document as the classifier's features see it: its words, lower-cased, without punctuation."""
    return " ".join(words(text))


def ngram_features(texts: list[str]):
    """Sparse (docs, BUCKETS): log(1 + count) of each hashed word unigram and bigram, L2-normalised per document.

    scikit-learn hashes with murmurhash3 and a fixed seed, not Python's hash(),
    which is salted per process: a word lands in the same bucket in every process.
    """
    import numpy as np
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.preprocessing import normalize
    x = HashingVectorizer(analyzer=ngrams, n_features=BUCKETS, alternate_sign=False, norm=None).transform(texts)
    x.data = np.log1p(x.data)
    return normalize(x)


class NgramClassifier:
    """Logistic regression on hashed word n-grams (scikit-learn); score() is P(synthetic)."""

    def __init__(self, l2: float = 1e-3):
        self.l2 = l2

    def fit(self, human_texts: list[str], synthetic_texts: list[str]) -> "NgramClassifier":
        """Minimises mean log-loss + l2/2 |w|^2 (the bias not penalised) with L-BFGS from zero weights.

        Deterministic: a convex objective, the full batch and a fixed start, so
        the same texts give the same weights and nothing needs a seed.
        """
        from sklearn.linear_model import LogisticRegression
        if not human_texts or not synthetic_texts:
            raise ValueError("NgramClassifier.fit needs at least one human and one synthetic text")
        y = [0] * len(human_texts) + [1] * len(synthetic_texts)
        # scikit-learn minimises C * (sum of log-losses) + |w|^2 / 2, the objective above times 1 / (C * l2 * n).
        self.model = LogisticRegression(C=1 / (self.l2 * len(y)), max_iter=1000)
        self.model.fit(ngram_features(human_texts + synthetic_texts), y)
        return self

    def score(self, texts: list[str]) -> list[float]:
        if not texts:
            return []
        return self.model.predict_proba(ngram_features(texts))[:, 1].tolist()


def unigram_logprobs(docs: list[list[int]], vocab_size: int, eos_id: int, alpha: float = 1.0) -> list[float]:
    """log p(token) under add-alpha smoothed token frequencies; each document's closing EOS counts once."""
    import torch

    from testbed.metrics.tail import count_ids
    counts = torch.from_numpy(count_ids(docs, vocab_size)).double()
    counts[eos_id] += len(docs)
    return ((counts + alpha) / (counts.sum() + alpha * vocab_size)).log().tolist()


def likelihood_ratio_scores(model, docs: list[list[int]], background: list[float], eos_id: int, batch_size: int = 32,
                            autocast=None) -> list[float]:
    """Per predicted token: mean log p under the model minus mean log p under `background`.

    The predicted tokens are those document_nll scores (the document, then
    its closing EOS). Higher means more likely synthetic.
    """
    from testbed.metrics.perplexity import document_nll
    nll = document_nll(model, docs, eos_id, batch_size, autocast)
    scores = []
    for doc, total in zip(docs, nll):
        n = len(doc) + 1
        scores.append((-total - sum(background[t] for t in doc) - background[eos_id]) / n)
    return scores


def threshold_at_fpr(human_scores: list[float], fpr: float) -> float:
    """The smallest t with at most fpr of human_scores strictly above t (-inf when fpr allows all of them).

    Flag `score > t`: on the labelled human text this flags at most that share.
    """
    if not human_scores:
        raise ValueError("threshold_at_fpr needs at least one human score")
    ordered = sorted(human_scores)
    allowed = math.floor(fpr * len(ordered) + 1e-9)  # the epsilon keeps 0.29 * 100 at 29, not 28.999...
    return ordered[len(ordered) - 1 - allowed] if allowed < len(ordered) else -math.inf


def roc_auc(is_synthetic: list[bool], scores: list[float]) -> float:
    """P(a synthetic document scores above a human one), ties counting one half; nan with one class."""
    from sklearn.metrics import roc_auc_score
    if all(is_synthetic) or not any(is_synthetic):
        return math.nan
    return float(roc_auc_score(is_synthetic, scores))


def detection_report(is_synthetic: list[bool], flagged: list[bool], scores: list[float]) -> dict:
    """How well flagging matched the truth.

    precision is nan when nothing was flagged and recall nan when there is no
    synthetic text: there is no share to report, and 0 or 1 would read as a
    result.
    """
    if not len(is_synthetic) == len(flagged) == len(scores):
        raise ValueError(f"{len(is_synthetic)} labels, {len(flagged)} flags and {len(scores)} scores")
    caught = sum(s and f for s, f in zip(is_synthetic, flagged))
    n_flagged, n_synthetic = sum(flagged), sum(is_synthetic)
    return {
        "precision": caught / n_flagged if n_flagged else math.nan,
        "recall": caught / n_synthetic if n_synthetic else math.nan,
        "roc_auc": roc_auc(is_synthetic, scores),
        "flagged": n_flagged,
        "synthetic_slipped": n_synthetic - caught,
    }


class Detector(Step):
    name = section = "detector"
    Config = DetectorConfig

    def __init__(self, c, curator):
        super().__init__(c, curator)
        self.background = None  # the human unigram model of the likelihood detector, made once

    def keep(self, g, pool, newest):
        c, cur = self.c, self.curator
        source = g - 2 if c.train_on == "earlier" and g >= 2 else g - 1  # g=1: no model but the writer exists
        # Labelled examples come from outside the pool, so the detector is never
        # scored on the documents it learned from: matched by text, since a model
        # may write one story twice and the pool may hold copies (accumulate); by its
        # words, which are all the features see (case and punctuation folded); and
        # against the whole pool the mix made, with what an earlier step removed.
        in_pool = {seen_as(d.text) for _, d in cur.pool}
        rng = random.Random(cur.seed(g, "detector"))
        human = [d for d in cur.human if seen_as(d.text) not in in_pool]
        if source == g - 1:
            synthetic = [d.text for d in newest if seen_as(d.text) not in in_pool]
        elif c.kind == "classifier":
            # The mix loads only the corpora the pool draws on, so an earlier one is
            # read here, from beside its model, and left as the mix leaves a corpus (without the documents cut off
            # at the length cap, unless mix.keep_unfinished): a detector learns the kind of text it will score.
            keep_unfinished = cur.cfg.mix.keep_unfinished
            synthetic = [r["text"] for r in cur.rundir.corpus(source)
                         if (r["ended"] or keep_unfinished) and seen_as(r["text"]) not in in_pool]
        else:
            synthetic = []
        if len(human) < 2 or (c.kind == "classifier" and len(synthetic) < 2):
            raise TestbedError(
                f"curate.detector at generation {g}: only {len(human)} human and {len(synthetic)} synthetic documents "
                f"(by {gen_name(source)}) lie outside the pool to train it on; a contaminated pool leaves some: use "
                "mix.regime=anchor with mix.anchor_set=fresh (see configs/strategies/detector.yaml)")
        human = rng.sample(human, min(c.train_docs, len(human)))
        synthetic = rng.sample(synthetic, min(c.train_docs, len(synthetic)))
        if c.kind == "classifier":
            classifier = NgramClassifier().fit([d.text for d in human], synthetic)
            scores, threshold = classifier.score([d.text for _, d in pool]), c.threshold
        else:
            model = cur.model(source)
            if self.background is None:
                self.background = unigram_logprobs([d.ids for d in cur.human], cur.vocab_size, cur.eos)
            batch_size = cur.cfg.eval.batch_size
            score = lambda docs: likelihood_ratio_scores(  # noqa: E731
                model, [d.ids for d in docs], self.background, cur.eos, batch_size, cur.autocast)
            threshold = threshold_at_fpr(score(human), c.fpr)
            scores = score([d for _, d in pool])
        keep = [not s > threshold for s in scores]
        # Which figure is which: a detector built on the writer itself measures an upper bound.
        return keep, {"kind": c.kind, "detector_model": gen_name(source), "in_distribution": source == g - 1,
                      "threshold": threshold, **cur.detection(pool, keep, scores)}
