"""Fresh human text for mix.anchor_set=fresh: documents no earlier stage has seen.

"The web filling up with AI text" means each generation's human share is new
human writing, not another draw from what generation 0 trained on. A source
with a known generator (storyworld) writes new documents from a seed stream of
their own; other corpora give each generation its own slice of the reserve
that split_documents set aside (data.fresh_docs), never reused.
"""
from testbed import TestbedError
from testbed.config import Config
from testbed.corpus.sources import truth
from testbed.mix import anchor_docs
from testbed.seeds import stage_seed


def per_generation(cfg: Config, train_docs: int) -> int:
    """Human documents the anchor regime asks of one generation, at most (fewer when samples are dropped)."""
    m = cfg.mix
    total = (m.docs if m.docs is not None else train_docs) if m.size == "fixed" else cfg.sample.size
    return anchor_docs(m.anchor_fraction, total)


def check_reserve(cfg: Config, train_docs: int) -> list[str]:
    """Stop before a run starts that would run out of fresh documents part way; a note when it reads none of those
    set aside (data.fresh_docs leaves the training split smaller either way)."""
    if truth(cfg.data) is not None:
        return []
    if cfg.mix.regime != "anchor" or cfg.mix.anchor_set != "fresh" or not cfg.mix.anchor_fraction:
        # Kept, not refused: runs that differ only in the mix (a sweep, a lab's arms) share one split this way.
        return [f"note: data.fresh_docs={cfg.data.fresh_docs:,} documents are set aside and this run reads none of "
                "them (mix.regime=anchor with mix.anchor_set=fresh does); they are left out of its training split "
                "so that it is split as runs that read them are"] if cfg.data.fresh_docs else []
    if cfg.sample.unit == "tokens" and cfg.mix.size == "grow":
        raise TestbedError("mix.anchor_set=fresh from data.fresh_docs needs a known pool size: "
                           "set sample.unit=docs or mix.size=fixed")
    per = per_generation(cfg, train_docs)
    need = per * cfg.generations
    if cfg.data.fresh_docs < need:
        # The reserve is cut from the corpus before the split, so a run started with fewer keeps its own: extending
        # it would change its split, which a resumed run refuses.
        raise TestbedError(
            f"mix.anchor_set=fresh needs {need:,} fresh human documents ({per:,} per generation x {cfg.generations} "
            f"generations) but data.fresh_docs={cfg.data.fresh_docs:,}; set data.fresh_docs={need}"
            + (f" (a run begun with {cfg.data.fresh_docs:,} keeps them, enough up to generation "
               f"{cfg.data.fresh_docs // per}: go further in a new run_dir)" if cfg.data.fresh_docs and per else ""))
    return []


def fresh_texts(cfg: Config, reserve: list[str], train_docs: int, generation: int, n: int) -> list[str]:
    """n human documents for `generation` (>= 1) that training, held-out, truth and reference never saw."""
    world = truth(cfg.data)
    if world is not None:
        return world.sample(n, stage_seed(cfg.seed, generation, "fresh"))
    # Slots of a fixed size, so a run extended with more generations keeps the earlier ones' documents.
    start = (generation - 1) * per_generation(cfg, train_docs)
    return reserve[start:start + n]
