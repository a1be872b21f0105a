"""Provenance whitelists: keep documents by the source their metadata claims.

Real provenance metadata is wrong some of the time (scraped text relabelled,
generated text passed off as human), so the labels the whitelist sees are the
true ones with a seeded share flipped: the whitelist then lets some synthetic
text through and drops some human text, as it would in practice.
"""
import random
import re
from dataclasses import dataclass, field

from testbed import TestbedError
from testbed.curate.step import Step, share


@dataclass
class WhitelistConfig:
    enabled: bool = False
    sources: list[str] = field(default_factory=lambda: ["human"])  # "human", "synthetic", "synthetic:gen_002"...
    mislabel: float = 0.0  # share of documents whose provenance label is wrong, as real metadata is

    def validate(self, cfg) -> None:
        share("curate.whitelist.mislabel", self.mislabel)
        if self.enabled and not self.sources:
            raise TestbedError("curate.whitelist.sources is empty: it would drop every document; list e.g. [human]")
        for entry in self.sources:  # a label no document carries ("Human") would drop what it meant to keep
            if not re.fullmatch(r"human|synthetic(:gen_\d{3})?", entry):
                raise TestbedError(f"curate.whitelist.sources: {entry!r} is not a source a document carries; use human, "
                                   "synthetic (every model's text) or synthetic:gen_NNN (model NNN's, e.g. synthetic:gen_002)")
        # A replace pool is model text only: with true labels, a whitelist of human text keeps none of it, and the run
        # would stop at generation 1, after generation 0 had trained.
        if (self.enabled and cfg.mix.regime == "replace" and self.mislabel == 0
                and not any(e.startswith("synthetic") for e in self.sources)):
            raise TestbedError(f"curate.whitelist.sources={self.sources} with mix.regime=replace: its pool is model text "
                               "only, so the whitelist would keep none of it; pool human text too (mix.regime=anchor, "
                               "as configs/strategies/whitelist.yaml), list a synthetic source, or set "
                               "curate.whitelist.mislabel")


def claimed_sources(sources: list[str], mislabel: float, seed: int) -> list[str]:
    """The labels as the pool's metadata carries them: round(mislabel * n) of them wrong.

    A mislabelled human document claims the pool's synthetic source (one of
    them, picked with the same rng, if there are several; "synthetic" if there
    are none); a mislabelled synthetic document claims to be human.
    """
    from testbed.mix import HUMAN  # here, not above: testbed.mix imports testbed.config, which imports this file
    rng = random.Random(seed)
    claimed = list(sources)
    flips = rng.sample(range(len(sources)), round(mislabel * len(sources)))
    synthetic = sorted({s for s in sources if s != HUMAN}) or ["synthetic"]
    for i in sorted(flips):
        claimed[i] = rng.choice(synthetic) if sources[i] == HUMAN else HUMAN
    return claimed


def allowed_by(label: str, entry: str) -> bool:
    """"synthetic" allows every synthetic generation ("synthetic:gen_003"), "human" only human."""
    return label == entry or label.startswith(entry + ":")


def whitelist_keep(claimed: list[str], allowed: list[str]) -> list[bool]:
    return [any(allowed_by(label, entry) for entry in allowed) for label in claimed]


class Whitelist(Step):
    name = section = "whitelist"
    Config = WhitelistConfig

    def keep(self, g, pool, newest):
        claimed = claimed_sources([label for label, _ in pool], self.c.mislabel, self.curator.seed(g, "whitelist"))
        return whitelist_keep(claimed, self.c.sources), {}
