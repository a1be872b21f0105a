"""A run's human corpus: its documents split into training, held-out and fresh reserve, and the
checks that it can feed the config, made before anything is written."""
from dataclasses import dataclass

from testbed import TestbedError
from testbed.config import Config
from testbed.corpus.fresh import check_reserve
from testbed.corpus.sources import load_documents, source_name
from testbed.corpus.split import checksum, split_documents
from testbed.seeds import corpus_seed, stage_seed


@dataclass
class HumanCorpus:
    train: list[str]
    heldout: list[str]
    reserve: list[str]  # data.fresh_docs: what mix.anchor_set=fresh adds to later generations
    split: dict  # split.json: the indices and the corpus's checksum


def human_corpus(cfg: Config) -> HumanCorpus:
    docs = load_documents(cfg.data, corpus_seed(cfg.seed))
    try:
        split = split_documents(docs, cfg.data.heldout_docs, stage_seed(cfg.seed, 0, "split"), source_name(cfg.data),
                                cfg.data.fresh_docs, cfg.data.max_docs)
    except TestbedError as e:
        data = cfg.data
        if data.source == "local" and data.path.lower().endswith(".txt") and data.separator != "line":
            # A file of one document a line, read by paragraphs, is a handful of documents: the size is not the fault.
            raise TestbedError(f"{e}; or, if {data.path} holds one document a line, data.separator=line "
                               f"(data.separator={data.separator} read {len(docs)} document(s) from it)") from None
        raise
    return HumanCorpus(*([docs[i] for i in split[part]] for part in ("train", "heldout", "fresh")), split)


def saved_training_split(cfg: Config, split: dict) -> list[str]:
    """A finished run's human training split, from its config and the indices of its split.json: what the report
    counts the run's words against."""
    docs = load_documents(cfg.data, corpus_seed(cfg.seed))
    if checksum(docs) != split["sha256"]:
        raise TestbedError("the human corpus changed since the run (split.json checksum differs)")
    return [docs[i] for i in split["train"]]


def check_fits(cfg: Config, human: list[list[int]]) -> list[str]:
    """Size checks that need the tokenized training split; returns notes on what fits but will bias the run."""
    from testbed.sample import human_prompt_pool, max_new_tokens

    context = cfg.model.dims()["context"]
    room = max_new_tokens(cfg.sample, context)
    tokens = sum(len(d) + 1 for d in human)
    if tokens < context:
        raise TestbedError(
            f"the human training split has {tokens} tokens, fewer than one block of model.context={context}; "
            "add documents or lower model.context")
    if cfg.sample.prompt == "human":
        human_prompt_pool(cfg.sample, human)
    return [*check_reserve(cfg, len(human)),
            *_long_documents(cfg, human, room + (cfg.sample.prompt_tokens if cfg.sample.prompt == "human" else 0))]


def _long_documents(cfg: Config, human: list[list[int]], whole: int) -> list[str]:
    """A note when many human documents are longer than a sample can be: the samples that imitate them are cut off,
    and what the next generation trains on is the few that ended early (or, kept, documents without endings), so
    length and much else would move from the context cap, not from recursion."""
    longer = sorted(len(d) for d in human)
    over = sum(n + 1 > whole for n in longer)  # a document and its end token
    if over < len(human) / 4:
        return []
    fate = ("kept unfinished (mix.keep_unfinished=true)" if cfg.mix.keep_unfinished else
            "left out of the next generation's pool (mix.keep_unfinished=false), which then holds the samples that "
            "ended early")
    return [f"note: {over / len(human):.0%} of the human training documents are longer than a sample can be "
            f"({whole} tokens; median document {longer[len(longer) // 2]:,}): samples that imitate them are cut off "
            f"and {fate}; split the corpus into shorter documents (data.separator) or raise model.context"]
