"""Curation: what stands between a generation's candidate pool and its training set.

The steps run in one fixed order, cheapest and most certain first:
  whitelist   provenance metadata (with a share of wrong labels, as real metadata has)
  heuristics  length, repetition loops, non-letters, documents never ended
  dedup       exact, then near-duplicate (MinHash/LSH)
  verifier    keep only text a verifier accepts
  watermark   drop text that carries the sampler's watermark
  detector    drop text a human-vs-synthetic detector flags
  perplexity  keep a band of documents ranked by a reference model's likelihood
Each is off unless the config turns it on. The pool is whatever the mix regime
made (so a contaminated pool is the anchor regime with fresh human text), and
every document's true provenance is known, so each step reports how many human
and how many synthetic documents it removed, not only how many in all.
"""
import random
import time

from testbed import TestbedError
from testbed.config import Config
from testbed.curate import dedup, detect, heuristics, perplexity_band, verify, watermark, whitelist
from testbed.mix import HUMAN, Doc
from testbed.model import load_model
from testbed.rundir import RunDir


def is_synthetic(label: str) -> bool:
    return label != HUMAN


class Curator:
    def __init__(self, cfg: Config, human: list[Doc], vocab_size: int, eos_id: int, rundir: RunDir, device="cpu",
                 autocast=None, seed=lambda generation, stage: 0):
        """rundir: the run's finished generations (models and corpora, checked); seed(g, stage): the stage seed."""
        self.cfg, self.curate = cfg, cfg.curate
        self.human, self.vocab_size, self.eos = human, vocab_size, eos_id
        self.rundir, self.device, self.autocast, self.seed = rundir, device, autocast, seed
        self.verifier = (verify.get_verifier(self.curate.verifier.name, [d.text for d in human])
                         if self.curate.verifier.enabled else None)
        self._background = None
        if self.curate.dedup.near:
            dedup.near_keep([], threshold=self.curate.dedup.threshold, num_perm=self.curate.dedup.num_perm)

    def steps(self) -> list[str]:
        c = self.curate
        on = {"whitelist": c.whitelist.enabled, "heuristics": c.heuristics.enabled, "dedup_exact": c.dedup.exact,
              "dedup_near": c.dedup.near, "verifier": c.verifier.enabled, "watermark": c.watermark.enabled,
              "detector": c.detector.enabled, "perplexity": c.perplexity.enabled}
        return [name for name, enabled in on.items() if enabled]

    def __call__(self, generation: int, pool: list[tuple[str, Doc]], newest: list[Doc]):
        """The curated pool and one report per step; newest is everything model g-1 wrote (the pool may hold part)."""
        reports = []
        for name in self.steps():
            start = time.perf_counter()
            keep, extra = getattr(self, "_" + name)(generation, pool, newest)
            removed = [label for (label, _), k in zip(pool, keep) if not k]
            reports.append({
                "step": name, "docs_in": len(pool), "docs_out": sum(keep),
                "removed_human": sum(not is_synthetic(r) for r in removed),
                "removed_synthetic": sum(map(is_synthetic, removed)),
                "seconds": round(time.perf_counter() - start, 3), **extra})
            pool = [e for e, k in zip(pool, keep) if k]
        return pool, reports

    def _whitelist(self, g, pool, newest):
        c = self.curate.whitelist
        claimed = whitelist.claimed_sources([label for label, _ in pool], c.mislabel, self.seed(g, "whitelist"))
        return whitelist.whitelist_keep(claimed, c.sources), {}

    def _heuristics(self, g, pool, newest):
        c = self.curate.heuristics
        return heuristics.heuristic_keep(
            [d.text for _, d in pool], [d.ended for _, d in pool], min_words=c.min_words, max_words=c.max_words,
            max_repeat=c.max_repeat, max_non_alpha=c.max_non_alpha, require_end=c.require_end), {}

    def _dedup_exact(self, g, pool, newest):
        return dedup.exact_keep([d.text for _, d in pool]), {}

    def _dedup_near(self, g, pool, newest):
        c = self.curate.dedup
        return dedup.near_keep([d.text for _, d in pool], threshold=c.threshold, num_perm=c.num_perm,
                               shingle=c.shingle, seed=self.seed(g, "dedup")), {}

    def _verifier(self, g, pool, newest):
        return verify.verify_keep(self.verifier, [d.text for _, d in pool]), {}

    def _watermark(self, g, pool, newest):
        w = self.cfg.sample.watermark
        z = watermark.watermark_z([d.ids for _, d in pool], self.vocab_size, self.eos, gamma=w.gamma, delta=w.delta, key=w.key,
                                    device=self.device)  # green lists differ between CPU and CUDA generators
        keep = watermark.watermark_keep(z, self.curate.watermark.z_threshold)
        return keep, _detection(pool, keep, z)

    def _detector(self, g, pool, newest):
        c = self.curate.detector
        source = g - 2 if c.train_on == "earlier" and g >= 2 else g - 1  # g=1: no model but the writer exists
        # Labelled examples come from outside the pool, so the detector is never
        # scored on the documents it learned from.
        in_pool = {id(d) for _, d in pool}
        rng = random.Random(self.seed(g, "detector"))
        human = [d for d in self.human if id(d) not in in_pool]
        if source == g - 1:
            synthetic = [d.text for d in newest if id(d) not in in_pool]
        elif c.kind == "classifier":
            # The mix loads only the corpora the pool draws on, so an earlier one is
            # read here, from beside its model; the pool's copies (accumulate) are
            # other objects, matched by text.
            pool_texts = {d.text for _, d in pool}
            synthetic = [r["text"] for r in self.rundir.corpus(source) if r["text"] not in pool_texts]
        else:
            synthetic = []
        if len(human) < 2 or (c.kind == "classifier" and len(synthetic) < 2):
            raise TestbedError(
                f"curate.detector at generation {g}: only {len(human)} human and {len(synthetic)} synthetic documents "
                f"(by gen_{source:03d}) lie outside the pool to train it on; a contaminated pool leaves some: use "
                "mix.regime=anchor with mix.anchor_set=fresh (see configs/strategies/detector.yaml)")
        human = rng.sample(human, min(c.train_docs, len(human)))
        synthetic = rng.sample(synthetic, min(c.train_docs, len(synthetic)))
        texts = [d.text for _, d in pool]
        if c.kind == "classifier":
            classifier = detect.NgramClassifier().fit([d.text for d in human], synthetic, self.seed(g, "detector_fit"))
            scores, threshold = classifier.score(texts), c.threshold
        else:
            model = load_model(self.rundir.model(source), self.device)
            if self._background is None:
                self._background = detect.unigram_logprobs([d.ids for d in self.human], self.vocab_size, self.eos)
            score = lambda docs: detect.likelihood_ratio_scores(  # noqa: E731
                model, [d.ids for d in docs], self._background, self.eos, self.cfg.eval.batch_size, self.autocast)
            threshold = detect.threshold_at_fpr(score(human), c.fpr)
            scores = score([d for _, d in pool])
        flagged = [s > threshold for s in scores]
        # Which figure is which: a detector built on the writer itself measures an upper bound.
        return [not f for f in flagged], {"kind": c.kind, "detector_model": f"gen_{source:03d}",
                                          "in_distribution": source == g - 1, "threshold": threshold,
                                          **_detection(pool, [not f for f in flagged], scores)}

    def _perplexity(self, g, pool, newest):
        c = self.curate.perplexity
        reference = 0 if c.reference == "first" else g - 1
        model = load_model(self.rundir.model(reference), self.device)
        nll = perplexity_band.mean_token_nll(model, [d.ids for _, d in pool], self.eos, self.cfg.eval.batch_size, self.autocast)
        return perplexity_band.band_keep(nll, c.low, c.high), {"reference": f"gen_{reference:03d}"}


def _detection(pool, keep, scores) -> dict:
    """How well a step told synthetic from human text: it 'flags' what it drops."""
    truth = [is_synthetic(label) for label, _ in pool]
    report = detect.detection_report(truth, [not k for k in keep], list(scores))
    # Undefined figures (no positives, one class only) are null: NaN is not JSON.
    return {k: None if isinstance(v, float) and v != v else v for k, v in report.items()}


def summary(pool_size: int, kept: list[tuple[str, Doc]], reports: list[dict]) -> dict:
    """The few figures of a generation's curation that belong in its metrics row."""
    row = {"curated_kept": len(kept) / pool_size if pool_size else 0.0,
           "train_synthetic_share": sum(is_synthetic(label) for label, _ in kept) / len(kept) if kept else 0.0}
    for r in reports:
        if "roc_auc" in r:
            for key in ("precision", "recall", "roc_auc", "synthetic_slipped", "in_distribution"):
                if key in r:
                    row[f"{r['step']}_{key}"] = r[key]
    return row
