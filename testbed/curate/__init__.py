"""Curation: what stands between a generation's candidate pool and its training set.

The steps run in the order of STEPS, cheapest and most certain first:
  whitelist   provenance metadata (with a share of wrong labels, as real metadata has)
  heuristics  length, repetition loops, non-letters, documents never ended
  dedup       exact, then near-duplicate (MinHash/LSH)
  verifier    keep only text a verifier accepts
  watermark   drop text that carries the sampler's watermark
  detector    drop text a human-vs-synthetic detector flags
  perplexity  keep a band of documents ranked by a reference model's likelihood
Each is off unless the config turns it on. A new step is one file (its keys,
their checks and its filter: see step.py) and one line here.
"""
import dataclasses
import functools

from testbed.curate import dedup, detect, heuristics, perplexity_band, verify, watermark, whitelist

STEPS = [
    whitelist.Whitelist,
    heuristics.Heuristics,
    dedup.Exact,
    dedup.Near,
    verify.Verify,
    watermark.Watermark,
    detect.Detector,
    perplexity_band.PerplexityBand,
]


def curate_config() -> type:
    """The curate: section as a dataclass, a field per step section in step order, from STEPS as they are now."""
    return _curate_config(tuple({step.section: step.Config for step in STEPS}.items()))


@functools.cache
def _curate_config(sections: tuple) -> type:
    # Cached so that the same steps give the same class, and configs built from them compare equal.
    return dataclasses.make_dataclass(
        "CurateConfig", [(name, cls, dataclasses.field(default_factory=cls)) for name, cls in sections],
        namespace={"__module__": __name__, "__doc__": "Steps applied, in the order of testbed.curate.STEPS, to "
                                                      "the training pool of each generation g >= 1."})


CurateConfig = curate_config()
