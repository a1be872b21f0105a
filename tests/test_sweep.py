"""testbed sweep: a grid of runs, checked before the first starts, resumable, ending in a report."""
import json
from pathlib import Path

import pytest

from testbed import TestbedError
from testbed.cli import main
from testbed.sweep import parse_seeds, parse_set, plan

QUICKSTART = str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml")
TINY = ["generations=1", "data.docs=300", "data.heldout_docs=30", "tokenizer.vocab_size=512", "model.preset=nano",
        "model.context=64", "train.tokens=12000", "train.batch_size=8", "sample.size=80", "sample.batch_size=40",
        "eval.sample_words=1500", "eval.truth_docs=20"]


def test_parse_set_and_seeds():
    assert parse_set(["mix.regime=replace,anchor", "curate.whitelist.sources=[human,synthetic],[human]"]) == [
        ("mix.regime", ["replace", "anchor"]), ("curate.whitelist.sources", ["[human,synthetic]", "[human]"])]
    assert parse_seeds("0,1,2") == [0, 1, 2] and parse_seeds(None) is None
    for bad, message in [(["mix.regime"], "is not key=v1,v2"), (["seed=1,2"], "use --seeds"),
                         (["a=1", "a=2"], "given twice")]:
        with pytest.raises(TestbedError, match=message):
            parse_set(bad)
    with pytest.raises(TestbedError, match="must be integers"):
        parse_seeds("0,one")


def test_plan_names_every_run_and_checks_every_config_first(tmp_path):
    root, configs = plan(QUICKSTART, [f"run_dir={tmp_path / 'sweep'}"],
                         [("mix.regime", ["replace", "anchor"])], [0, 1])
    assert root == tmp_path / "sweep"
    assert [c.run_dir for c in configs] == [str(root / n) for n in (
        "mix.regime=replace_seed=0", "mix.regime=replace_seed=1", "mix.regime=anchor_seed=0", "mix.regime=anchor_seed=1")]
    assert [(c.mix.regime, c.seed) for c in configs] == [("replace", 0), ("replace", 1), ("anchor", 0), ("anchor", 1)]
    with pytest.raises(TestbedError, match="mix.regime='anchr' is not allowed"):
        plan(QUICKSTART, [f"run_dir={tmp_path / 'bad'}"], [("mix.regime", ["replace", "anchr"])], None)
    assert not (tmp_path / "bad").exists()


def test_a_sweep_runs_its_grid_resumes_and_reports(tmp_path, monkeypatch, capsys):
    root = tmp_path / "sweep"
    args = ["sweep", QUICKSTART, "--set", "mix.regime=replace,accumulate", f"run_dir={root}", *TINY]
    assert main(args) == 0
    runs = ["mix.regime=replace_seed=0", "mix.regime=accumulate_seed=0"]
    assert sorted(p.name for p in root.iterdir()) == sorted([*runs, "report"])
    report = json.loads((root / "report" / "report.json").read_text())
    assert [r["name"] for r in report["runs"]] == runs and report["differing_keys"] == ["mix.regime"]
    assert f"report: {root / 'report' / 'index.html'}" in capsys.readouterr().out

    import testbed.loop

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")
    monkeypatch.setattr(testbed.loop, "train", no_training)
    assert main(args) == 0  # the same sweep again: every run is finished, only the report is rebuilt
    assert "all 2 generations are finished" in capsys.readouterr().out


def test_a_sweep_is_not_started_inside_a_single_run(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("")
    assert main(["sweep", QUICKSTART, "--seeds", "0,1", f"run_dir={tmp_path}"]) == 2
    assert "holds a single run" in capsys.readouterr().err
