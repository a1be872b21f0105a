"""The metric table (testbed/metrics/spec.py) is the one place a metric is declared: a row added there
reaches `testbed compare`, the run's log line and summary, and the docs check."""
import importlib.util
from pathlib import Path

import pytest

from testbed.metrics import spec
from testbed.metrics.suite import Evaluator
from testbed.report.compare import table

ROOT = Path(__file__).resolve().parents[1]


def metrics_doc():
    """scripts/metrics_doc.py as a module: its rewrite() is what the docs check compares against."""
    found = importlib.util.spec_from_file_location("metrics_doc", ROOT / "scripts" / "metrics_doc.py")
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module


def test_the_table_is_well_formed():
    keys = [m.key for m in spec.METRICS]
    assert len(keys) == len(set(keys)), "a key declared twice"
    assert all(m.family in spec.FAMILIES for m in spec.METRICS)
    assert all(m.collapse in ("up", "down", "") for m in spec.METRICS)
    # The collapse test checks a signal against its direction: a signal must have one.
    assert all(spec.direction(m.key) for m in spec.METRICS if m.signal)
    assert spec.direction("heldout_ppl") == 1 and spec.direction("rare_token_recall") == -1
    assert spec.direction("true_excess_ce_se") == 0 and spec.direction("no_such_key") == 0
    # The collapse lab's "tail goes first" reads a part of a table: its arrow and colour were lost.
    assert spec.direction("recall_by_band.rare") == -1 and spec.direction("train_mix.human") == 0


def test_a_row_with_a_misspelt_family_or_direction_is_refused_where_it_is_written():
    with pytest.raises(ValueError, match="family 'lenght' is not one of run, fit"):
        spec.Metric("mean_story_words", "lenght", "down", "words a story")
    with pytest.raises(ValueError, match="collapse 'Down' must be 'up', 'down' or ''"):
        spec.Metric("mean_story_words", "length", "Down", "words a story")


def test_summary_keys_are_the_headline_metrics_every_row_has():
    rows = [{"generation": 0, "heldout_ppl": 2.0, "distinct_2": 0.1, "rare_token_recall": 0.8, "true_excess_ce": 0.1,
             "self_ppl": 2.0},
            {"generation": 1, "heldout_ppl": 2.2, "distinct_2": 0.1, "rare_token_recall": 0.7, "true_excess_ce": 0.2,
             "self_ppl": 2.1, "curated_kept": 0.9}]
    assert spec.summary_keys(rows) == ["generation", "heldout_ppl", "distinct_2", "rare_token_recall", "true_excess_ce"]
    assert spec.summary_keys([]) == []


def test_a_registered_metric_reaches_compare_the_log_line_and_the_docs(monkeypatch):
    toy = spec.Metric("toy_recall", "tail", "down", "a metric only this test declares", "toys / all", headline=True)
    run = {"name": "toyrun", "planned": 1, "partial": False, "config": {},
           "rows": [{"generation": 0, "heldout_ppl": 2.0, "toy_recall": 0.5},
                    {"generation": 1, "heldout_ppl": 2.5, "toy_recall": 0.25}]}
    before = table([run])
    assert "toy_recall" not in before  # a key in the rows but not in the table is no default column
    docs = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    assert metrics_doc().rewrite(docs) == docs

    monkeypatch.setattr(spec, "METRICS", [*spec.METRICS, toy])
    out = table([run]).splitlines()
    assert out[0].split() == ["run", "generations", "heldout_ppl", "toy_recall"]
    assert "0.500 -> 0.250 (-50%)" in out[1]
    assert out[-1].endswith("collapse moves heldout_ppl up, toy_recall down")
    assert Evaluator.__new__(Evaluator).headline[-1] == "toy_recall"  # the loop's eval line
    assert spec.summary_keys(run["rows"]) == ["generation", "heldout_ppl", "toy_recall"]
    assert toy.key in spec.plotted()
    # The docs check now fails until scripts/metrics_doc.py is run, and the row it would write is the toy's.
    rewritten = metrics_doc().rewrite(docs)
    assert rewritten != docs
    assert "| `toy_recall` | a metric only this test declares | toys / all | down |" in rewritten
    assert "`curated_kept`, `train_synthetic_share`, `toy_recall`." in rewritten  # the headline line

