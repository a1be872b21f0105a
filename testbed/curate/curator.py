"""The curator: runs the steps a config turns on (testbed.curate.STEPS, in that order) over a generation's pool.

The pool is whatever the mix regime made (so a contaminated pool is the
anchor regime with fresh human text), and every document's true provenance
is known, so each step reports how many human and how many synthetic
documents it removed, not only how many in all.
"""
import time

import testbed.curate
from testbed import TestbedError
from testbed.config import Config
from testbed.curate import detect
from testbed.mix import HUMAN, Doc
from testbed.model import load_model
from testbed.rundir import RunDir


def is_synthetic(label: str) -> bool:
    return label != HUMAN


class Curator:
    def __init__(self, cfg: Config, human: list[Doc], vocab_size: int, eos_id: int, rundir: RunDir, device="cpu",
                 autocast=None, seed=lambda generation, stage: 0):
        """rundir: the run's finished generations (models and corpora, checked); seed(g, stage): the stage seed.

        What the steps share is kept here: cfg, the human training split, the
        vocabulary, the run's models and the stage seeds.
        """
        self.cfg, self.human, self.vocab_size, self.eos = cfg, human, vocab_size, eos_id
        self.rundir, self.device, self.autocast, self.seed = rundir, device, autocast, seed
        sections = [getattr(cfg.curate, step.section) for step in testbed.curate.STEPS]
        self.active = [step(c, self) for step, c in zip(testbed.curate.STEPS, sections) if step.enabled(c)]

    def steps(self) -> list[str]:
        return [step.name for step in self.active]

    def step(self, name: str):
        """The active step called `name`."""
        return next(step for step in self.active if step.name == name)

    def section(self, name: str) -> str:
        """Where step `name` keeps its keys: curate.<section>."""
        return self.step(name).section

    def __call__(self, generation: int, pool: list[tuple[str, Doc]], newest: list[Doc]):
        """The curated pool and one report per step; newest is everything model g-1 wrote (the pool may hold part)."""
        self.pool = pool  # as the mix made it: a document an earlier step removed is still not outside the pool
        reports = []
        for step in self.active:
            start = time.perf_counter()
            keep, extra = _checked(step, step.keep(generation, pool, newest), len(pool))
            removed = [label for (label, _), k in zip(pool, keep) if not k]
            reports.append({
                "step": step.name, "docs_in": len(pool), "docs_out": sum(keep),
                "removed_human": sum(not is_synthetic(r) for r in removed),
                "removed_synthetic": sum(map(is_synthetic, removed)),
                "seconds": round(time.perf_counter() - start, 3), **extra})
            pool = [e for e, k in zip(pool, keep) if k]
        return pool, reports

    def model(self, g: int):
        """Model g of this run, on the curator's device."""
        return load_model(self.rundir.model(g), self.device)

    def detection(self, pool: list[tuple[str, Doc]], keep: list[bool], scores: list[float]) -> dict:
        """How well a step told synthetic from human text: it 'flags' what it drops."""
        truth = [is_synthetic(label) for label, _ in pool]
        report = detect.detection_report(truth, [not k for k in keep], list(scores))
        # Undefined figures (no positives, one class only) are null: NaN is not JSON.
        return {k: None if isinstance(v, float) and v != v else v for k, v in report.items()}


def _checked(step, result, n: int) -> tuple[list, dict]:
    """A step's keep() answer, refused when it is not one flag per pool document and a dict: a short list would
    silently drop the documents past its end from the pool and from the step's report."""
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
        raise TestbedError(f"curation step {step.name!r}: keep() returned {type(result).__name__}; it returns "
                           "(flags, figures): one bool per pool document, and a dict (empty if it adds none)")
    if len(keep := list(result[0])) != n:
        raise TestbedError(f"curation step {step.name!r}: keep() returned {len(keep)} flags for a pool of {n} "
                           "documents; it returns one per document")
    return keep, result[1]


def curate_everywhere(curator: Curator, g: int, examples, newest, accelerator, say, block: int):
    """Curate on the main process, then share the kept set, so every process trains on the same data; stop
    where it leaves less than one block of block tokens to train on, naming the step to blame."""
    from testbed.device import on_main

    def curate():
        kept, reports = curator(g, examples, newest)
        keep = {id(d) for _, d in kept}
        return [id(d) in keep for _, d in examples], reports
    mask, reports = on_main(accelerator, curate)
    kept = [e for e, k in zip(examples, mask) if k]
    for step in reports:
        say(f"curate {step['step']}: {step['docs_in']} -> {step['docs_out']} docs (removed {step['removed_human']} human, "
            f"{step['removed_synthetic']} synthetic) in {step['seconds']:.1f}s")
    tokens = sum(len(d.ids) + 1 for _, d in kept)  # as packing counts them: each document after an EOS
    if tokens < block:
        if kept:
            most = max(reports, key=lambda step: step["docs_in"] - step["docs_out"])["step"]
            what = (f"{len(kept)} of {len(examples)} documents, {tokens} tokens, less than one block of "
                    f"model.context={block} (curate.{curator.section(most)} removed the most)")
        else:
            emptied = curator.section(next(step["step"] for step in reports if step["docs_out"] == 0))
            what = f"none of {len(examples)} documents (curate.{emptied} removed the last of them)"
        raise TestbedError(f"generation {g}: curation kept {what}; loosen that step, or mix in human text "
                           "(mix.regime=anchor)")
    return kept, reports


def summary(pool_size: int, kept: list[tuple[str, Doc]], reports: list[dict], trained=None) -> dict:
    """The few figures of a generation's curation that belong in its metrics row.

    trained: the training set, where it is not all that curation kept (mix.after_curation cut it to the budget).
    """
    trained = kept if trained is None else trained
    row = {"curated_kept": len(kept) / pool_size if pool_size else 0.0,
           "train_synthetic_share": sum(is_synthetic(label) for label, _ in trained) / len(trained) if trained else 0.0}
    for r in reports:
        if "roc_auc" in r:
            for key in ("precision", "recall", "roc_auc", "synthetic_slipped", "in_distribution"):
                if key in r:
                    row[f"{r['step']}_{key}"] = r[key]
    return row
