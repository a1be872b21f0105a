"""The suite on a real collapsing run: every metric the metric table marks as a signal (the fit, tail,
distance and truth figures) moves the way the table says collapse moves it.

It rescores the slow tests' quickstart run (models and corpora of 4
generations) in about a minute more; `pytest -m slow`.
"""
import json

import pytest

from testbed.metrics import spec


@pytest.mark.slow
def test_quickstart_generations_move_the_collapse_way(quickstart_run):
    from testbed.config import load_config
    from testbed.seeds import stage_seed
    from testbed.corpus.sources import load_documents, source_name
    from testbed.corpus.split import split_documents
    from testbed.metrics.suite import Evaluator
    from testbed.model import load_model
    from testbed.rundir import read_json, read_jsonl
    from testbed.sample import Sample
    from testbed.tokenizer import load_tokenizer

    cfg = load_config(quickstart_run / "config.yaml")
    split = read_json(quickstart_run / "split.json")
    # the run's own human split: the documents its split.json indexes, regenerated from the same seed
    docs = load_documents(cfg.data, stage_seed(cfg.seed, 0, "corpus"))
    assert split_documents(docs, cfg.data.heldout_docs, stage_seed(cfg.seed, 0, "split"), source_name(cfg.data)) == split
    ev = Evaluator(cfg, load_tokenizer(quickstart_run / "tokenizer"), [docs[i] for i in split["train"]],
                   [docs[i] for i in split["heldout"]], truth_seed=stage_seed(cfg.seed, 0, "truth"),
                   reference_seed=stage_seed(cfg.seed, 0, "reference"))
    corpora = [read_jsonl(quickstart_run / f"gen_{g:03d}" / "corpus.jsonl") for g in range(4)]
    gen0 = [r["text"] for r in corpora[0]]
    seed = stage_seed(cfg.seed, 0, "eval")
    rows = []
    for g, corpus in enumerate(corpora):
        samples = [Sample([0], [0] * r["tokens"], r["ended"]) for r in corpus]
        model = load_model(quickstart_run / f"gen_{g:03d}" / "model")
        rows.append(ev.evaluate(model, [r["text"] for r in corpus], samples, seed=seed, gen0_texts=gen0))
    first, last = rows[0], rows[-1]
    signals = [m.key for m in spec.METRICS if m.signal]
    assert len(signals) >= 16 and {"heldout_ppl", "rare_token_recall", "true_excess_ce"} <= set(signals)
    moved = {k: (first[k], last[k]) for k in signals if not spec.direction(k) * (last[k] - first[k]) > 0}
    assert not moved, f"against the collapse direction (generation 0, generation 3): {json.dumps(moved)}"
    assert rows[0]["heldout_ppl"] == pytest.approx(read_jsonl(quickstart_run / "metrics.jsonl")[0]["heldout_ppl"], rel=1e-4)
