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
import zlib
from collections import Counter

import torch

from testbed.metrics.perplexity import document_nll
from testbed.text import words

BUCKETS = 2 ** 18


def ngram_features(texts: list[str], buckets: int = BUCKETS) -> torch.Tensor:
    """Sparse (docs, buckets): log(1 + count) of each hashed word unigram and bigram, L2-normalised per document.

    crc32, not hash(): Python salts str hashes per process, and a fitted
    classifier must map a word to the same bucket in every process.
    """
    rows, cols, vals = [], [], []
    for r, text in enumerate(texts):
        w = words(text)
        grams = w + [a + " " + b for a, b in zip(w, w[1:])]
        counts = Counter(zlib.crc32(g.encode("utf-8")) % buckets for g in grams)
        weights = {c: math.log1p(n) for c, n in counts.items()}
        norm = math.sqrt(sum(v * v for v in weights.values())) or 1.0
        for c, v in weights.items():
            rows.append(r)
            cols.append(c)
            vals.append(v / norm)
    return torch.sparse_coo_tensor(torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1),
                                   torch.tensor(vals, dtype=torch.float32), (len(texts), buckets),
                                   check_invariants=True).coalesce()


class NgramClassifier:
    """Logistic regression on hashed word n-grams; score() is P(synthetic)."""

    def __init__(self, l2: float = 1e-3, steps: int = 100):
        self.l2, self.steps = l2, steps
        self.weight = torch.zeros(BUCKETS)
        self.bias = torch.zeros(())

    def fit(self, human_texts: list[str], synthetic_texts: list[str], seed: int = 0) -> "NgramClassifier":
        """Full-batch L-BFGS from zero weights, at most `steps` iterations.

        seed is taken so that every stage has the same interface, but this fit
        draws nothing at random (convex objective, full batch, fixed start):
        the same texts give the same weights.
        """
        if not human_texts or not synthetic_texts:
            raise ValueError("NgramClassifier.fit needs at least one human and one synthetic text")
        x = ngram_features(human_texts + synthetic_texts)
        y = torch.tensor([0.0] * len(human_texts) + [1.0] * len(synthetic_texts))
        weight = torch.zeros(BUCKETS, requires_grad=True)
        bias = torch.zeros((), requires_grad=True)
        opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=self.steps, history_size=10,
                                line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-9)

        def closure():
            opt.zero_grad()
            logits = torch.sparse.mm(x, weight[:, None]).squeeze(1) + bias
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
            loss = loss + self.l2 / 2 * weight.square().sum()
            loss.backward()
            return loss
        opt.step(closure)
        self.weight, self.bias = weight.detach(), bias.detach()
        return self

    @torch.no_grad()
    def score(self, texts: list[str]) -> list[float]:
        if not texts:
            return []
        return torch.sigmoid(torch.sparse.mm(ngram_features(texts), self.weight[:, None]).squeeze(1) + self.bias).tolist()


def unigram_logprobs(docs: list[list[int]], vocab_size: int, eos_id: int, alpha: float = 1.0) -> list[float]:
    """log p(token) under add-alpha smoothed token frequencies; each document's closing EOS counts once."""
    tokens = torch.tensor([t for doc in docs for t in doc], dtype=torch.long)
    counts = torch.bincount(tokens, minlength=vocab_size).double()
    counts[eos_id] += len(docs)
    return ((counts + alpha) / (counts.sum() + alpha * vocab_size)).log().tolist()


def likelihood_ratio_scores(model, docs: list[list[int]], background: list[float], eos_id: int, batch_size: int = 32,
                            autocast=None) -> list[float]:
    """Per predicted token: mean log p under the model minus mean log p under `background`.

    The predicted tokens are those document_nll scores (the document, then
    its closing EOS). Higher means more likely synthetic.
    """
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
    """P(a synthetic document scores above a human one), ties counting one half (Mann-Whitney U); nan with one class."""
    pos = sum(is_synthetic)
    neg = len(is_synthetic) - pos
    if pos == 0 or neg == 0:
        return math.nan
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1  # 1-based rank, averaged over the tie
        i = j + 1
    u = sum(r for r, s in zip(ranks, is_synthetic) if s) - pos * (pos + 1) / 2
    return u / (pos * neg)


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
