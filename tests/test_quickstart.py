"""The quickstart as a user runs it, and the collapse it must show (about 6 minutes on 2 cores)."""
import json

import pytest


@pytest.mark.slow
def test_quickstart_shows_collapse(quickstart_run):
    rows = [json.loads(line) for line in open(quickstart_run / "metrics.jsonl")]
    first, last = rows[0], rows[-1]
    assert len(rows) >= 4  # generation 0 and at least 3 more
    assert last["heldout_ppl"] > first["heldout_ppl"]
    assert last["rare_token_recall"] < first["rare_token_recall"]
    assert last["true_excess_ce"] > first["true_excess_ce"]
    assert last["true_tail_recall"] < first["true_tail_recall"]
