"""A run's human corpus: its documents split into training, held-out and fresh reserve, and the
checks that it can feed the config, made before anything is written."""
from dataclasses import dataclass

from testbed import TestbedError
from testbed.config import Config
from testbed.corpus.fresh import check_reserve
from testbed.corpus.sources import load_documents, source_name
from testbed.corpus.split import split_documents
from testbed.seeds import stage_seed


@dataclass
class HumanCorpus:
    train: list[str]
    heldout: list[str]
    reserve: list[str]  # data.fresh_docs: what mix.anchor_set=fresh adds to later generations
    split: dict  # split.json: the indices and the corpus's checksum


def human_corpus(cfg: Config) -> HumanCorpus:
    docs = load_documents(cfg.data, stage_seed(cfg.seed, 0, "corpus"))
    split = split_documents(docs, cfg.data.heldout_docs, stage_seed(cfg.seed, 0, "split"), source_name(cfg.data),
                            cfg.data.fresh_docs, cfg.data.max_docs)
    return HumanCorpus(*([docs[i] for i in split[part]] for part in ("train", "heldout", "fresh")), split)


def check_fits(cfg: Config, human: list[list[int]]) -> None:
    """Size checks that need the tokenized training split."""
    from testbed.model import resolve
    from testbed.sample import human_prompt_pool, max_new_tokens

    context = resolve(cfg.model)["context"]
    max_new_tokens(cfg.sample, context)
    tokens = sum(len(d) + 1 for d in human)
    if tokens < context:
        raise TestbedError(
            f"the human training split has {tokens} tokens, fewer than one block of model.context={context}; "
            "add documents or lower model.context")
    if cfg.sample.prompt == "human":
        human_prompt_pool(cfg.sample, human)
    check_reserve(cfg, len(human))
