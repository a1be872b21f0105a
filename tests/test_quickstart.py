"""The quickstart as a user runs it: a competent generation 0, then the collapse it must show
(about 13 minutes at one thread, shared with test_metrics_collapse through the quickstart_run fixture)."""
import json

import pytest

from testbed.metrics import spec


def rows_of(run_dir):
    return [json.loads(line) for line in open(run_dir / "metrics.jsonl")]


@pytest.mark.slow
def test_quickstart_generation_0_is_competent(quickstart_run):
    """Most of the tail must survive generation 0, or the tail figures measure under-training, not collapse."""
    first = rows_of(quickstart_run)[0]
    assert first["rare_token_recall_rel"] >= 0.6  # of what human text of the same size recalls
    assert first["grammar_rate"] >= 0.3  # whole stories the grammar accepts, names aside
    assert first["ended_rate"] >= 0.99


@pytest.mark.slow
def test_quickstart_shows_collapse_every_generation(quickstart_run):
    rows = rows_of(quickstart_run)
    assert len(rows) >= 4  # generation 0 and at least 3 more
    for before, after in zip(rows, rows[1:]):
        for k in ("heldout_ppl", "true_excess_ce"):
            assert spec.direction(k) * (after[k] - before[k]) > 0, (k, after["generation"])
    first, last = rows[0], rows[-1]
    for k in ("rare_token_recall", "true_tail_recall"):
        assert spec.direction(k) * (last[k] - first[k]) > 0, k
