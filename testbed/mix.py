"""The training set of each generation: which human and synthetic documents.

Generation 0 trains on the human training split. Generation g >= 1 draws on
the synthetic corpora written by models 0..g-1 and on the human split, by
regime:
  replace     the newest synthetic corpus only (the classic collapse loop)
  accumulate  the human split and every synthetic corpus so far
  anchor      the newest synthetic corpus, with a share of human documents
and by size: `grow` keeps the whole pool, `fixed` subsamples `mix.docs`
documents from it (accumulate-subsample): before curation, or with
`mix.after_curation` from what curation kept (`fill`).
"""
import random
from dataclasses import dataclass

import numpy as np

from testbed import TestbedError, gen_name
from testbed.config import MixConfig
from testbed.tokenizer import encode

HUMAN = "human"


# Compared by identity: curation asks which documents are in a pool. Slots: a run may hold millions.
@dataclass(eq=False, slots=True)
class Doc:
    ids: np.ndarray  # a view into the TokenIds its corpus was encoded into: pools share those ids, never copy them
    text: str
    ended: bool = True  # its writer ended it; human documents always are


def documents(tokenizer, texts: list[str]) -> list[Doc]:
    return [Doc(ids, text) for ids, text in zip(encode(tokenizer, texts), texts)]


def synthetic_label(generation: int) -> str:
    """Provenance of text written by the model of `generation`."""
    return f"synthetic:{gen_name(generation)}"


def training_set(generation: int, human: list, synthetic: dict[int, list], cfg: MixConfig,
                 seed: int, anchor_seed: int, fresh=None) -> list[tuple[str, object]]:
    """(provenance, document) pairs for `generation`; synthetic[k] is what model k wrote.

    The human anchor is, for mix.anchor_set=fixed, a draw from the human split by
    anchor_seed (the same every generation); for fresh, fresh(n): n new human documents.
    """
    labelled_human = [(HUMAN, d) for d in human]
    if generation == 0:
        return labelled_human
    newest = [(synthetic_label(generation - 1), d) for d in synthetic[generation - 1]]
    rng = random.Random(seed)
    budget = budget_docs(cfg, len(human))
    if cfg.regime == "replace":
        pool = newest
    elif cfg.regime == "accumulate":
        pool = labelled_human + [(synthetic_label(k), d) for k in range(generation) for d in synthetic[k]]
    else:
        total = budget if cfg.size == "fixed" else len(newest)
        n_human = anchor_docs(cfg.anchor_fraction, total)
        if cfg.anchor_set == "fixed":
            n_human = min(n_human, len(human))  # a fresh anchor may be larger than the split: new text has no end
        anchor = ([(HUMAN, d) for d in fresh(n_human)] if cfg.anchor_set == "fresh"
                  else nested_sample(random.Random(anchor_seed), labelled_human, n_human))
        rest = newest if cfg.after_curation else rng.sample(newest, min(total - n_human, len(newest)))
        return anchor + rest
    if cfg.size == "fixed" and len(pool) > budget and not cfg.after_curation:
        pool = rng.sample(pool, budget)
    return pool


def anchor_docs(fraction: float, total: int) -> int:
    """Human documents in an anchored pool of `total`: the fraction, rounded, and at least one whenever the fraction
    is above 0, so that a small pool anchored at 10% is not silently a replace run."""
    n = round(fraction * total)
    return max(n, 1) if fraction > 0 and total > 0 else n


def nested_sample(rng: random.Random, population: list, k: int) -> list:
    """k of population, seeded, such that a smaller k draws a prefix of a larger one: a fixed anchor whose size
    changes by a document (mix.size=grow) keeps the same documents. random.sample does not promise that (it switches
    method with k); this is its method for large k, draw for draw, so equal to random.sample wherever it uses that."""
    pool, n = list(population), len(population)
    out = []
    for i in range(k):
        j = rng.randrange(n - i)
        out.append(pool[j])
        pool[j] = pool[n - i - 1]
    return out


def budget_docs(cfg: MixConfig, n_human: int) -> int:
    """How many documents mix.size=fixed trains on."""
    return cfg.docs if cfg.docs is not None else n_human


def check_fills_a_block(g: int, examples: list[tuple[str, Doc]], block: int, cfg: MixConfig, n_human: int,
                        written: int, kept: int) -> None:
    """Stop generation g whose mix holds less than one block because model g-1's documents ran into the length cap
    unfinished and mix.keep_unfinished left them out (written: documents the corpora hold, kept: those in the pool).
    Else curation, or packing with its advice to lower model.context, takes the blame; not where a fixed budget
    (mix.docs) is what made the mix small."""
    tokens = sum(len(d.ids) + 1 for _, d in examples)
    cut_short = cfg.size == "grow" or len(examples) < budget_docs(cfg, n_human)
    if tokens >= block or not (cut_short or not examples) or not (cut := written - kept):
        return
    held = (f"{len(examples)} document{'s' * (len(examples) != 1)}, {tokens} token{'s' * (tokens != 1)}, "
            f"less than one block of model.context={block}" if examples else "no documents")
    raise TestbedError(f"generation {g}: the mix holds {held}: {'all' if cut == written else f'{cut:,} of the'} "
                       f"{written:,} that model {g - 1} wrote ran into the length cap unfinished, and "
                       "mix.keep_unfinished=false leaves those out; set mix.keep_unfinished=true, or give "
                       "documents more room (sample.max_new_tokens, model.context)")


def fill(curated: list[tuple[str, object]], cfg: MixConfig, n_human: int, seed: int) -> list[tuple[str, object]]:
    """mix.after_curation: the curated pool cut to the budget. The anchor regime keeps every human document
    curation kept and fills the rest with a seeded subsample of the synthetic ones; the others subsample it all."""
    budget = budget_docs(cfg, n_human)
    if len(curated) <= budget:
        return curated
    rng = random.Random(seed)
    if cfg.regime != "anchor":
        return rng.sample(curated, budget)
    anchor = [e for e in curated if e[0] == HUMAN][:budget]
    synthetic = [e for e in curated if e[0] != HUMAN]
    return anchor + rng.sample(synthetic, min(budget - len(anchor), len(synthetic)))


def composition(examples: list[tuple[str, object]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for label, _ in examples:
        counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items()))


def synthetic_needed(generation: int, regime: str) -> list[int]:
    """Whose corpora generation `generation` draws on."""
    if generation == 0:
        return []
    return list(range(generation)) if regime == "accumulate" else [generation - 1]


def synthetic_docs(rows: list[dict], tokenizer, keep_unfinished: bool) -> list[Doc]:
    """A synthetic corpus as documents; those cut off at the length cap left out unless kept, since
    training appends an end token that would teach the cut as an ending."""
    rows = [r for r in rows if keep_unfinished or r["ended"]]
    ids = encode(tokenizer, [r["text"] for r in rows])
    return [Doc(i, r["text"], r["ended"]) for i, r in zip(ids, rows)]
