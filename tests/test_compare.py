"""testbed compare: the last generation against generation 0, run by run."""
import shutil

import pytest
import yaml

from testbed import TestbedError
from testbed.cli import main
from testbed.config import load_config
from testbed.loop import run
from testbed.report.compare import load_run, load_runs, table


@pytest.fixture
def two_runs(tmp_path, tiny_run):
    run(tiny_run(tmp_path / "replace", "generations=1"), say=lambda *a: None)
    run(tiny_run(tmp_path / "accumulate", "generations=1", "mix.regime=accumulate"), say=lambda *a: None)
    return tmp_path / "replace", tmp_path / "accumulate"


def test_table_shows_each_run_relative_to_generation_0(two_runs):
    runs = [load_run(p) for p in two_runs]
    out = table(runs, ["heldout_ppl"])
    lines = out.splitlines()
    assert lines[:2] == ["configs differ in", "  mix.regime: replace (replace), accumulate (accumulate)"]
    for r, line in zip(runs, [ln for ln in lines if ln.startswith(("replace ", "accumulate "))]):
        first, last = r["rows"][0]["heldout_ppl"], r["rows"][-1]["heldout_ppl"]
        assert f"{first:.3f} -> {last:.3f} ({(last - first) / first:+.0%})" in line
        assert "1/1" in line and "partial" not in line


def test_an_unfinished_run_is_shown_as_partial(two_runs):
    replace, _ = two_runs
    config = yaml.safe_load((replace / "config.yaml").read_text())
    config["generations"] = 3  # as if killed after generation 1 of 3
    (replace / "config.yaml").write_text(yaml.safe_dump(config))
    line = next(ln for ln in table([load_run(replace)]).splitlines() if ln.startswith("replace"))
    assert "1/3 partial" in line


def test_rows_come_from_the_finished_generations_not_from_metrics_jsonl(two_runs):
    """metrics.jsonl is derived: cut, stale after a kill before its rewrite, or edited, it must not be what is shown."""
    replace, _ = two_runs
    expected = load_run(replace)["rows"]
    assert [r["generation"] for r in expected] == [0, 1]
    whole = (replace / "metrics.jsonl").read_text()
    for damaged in (whole[:200], whole.splitlines(keepends=True)[0], whole.replace('"heldout_ppl": ', '"heldout_ppl": 1e9, "x": ')):
        (replace / "metrics.jsonl").write_text(damaged)
        assert load_run(replace)["rows"] == expected
    (replace / "metrics.jsonl").unlink()
    assert load_run(replace)["rows"] == expected


def test_cli_compare_and_its_errors(two_runs, capsys, tmp_path):
    assert main(["compare", *map(str, two_runs)]) == 0
    out = capsys.readouterr().out
    assert "rare_token_recall" in out and "collapse moves heldout_ppl up" in out
    assert main(["compare", str(two_runs[0]), "--metrics", "heldout_pp"]) == 2
    assert "no run has a number for 'heldout_pp'" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "nothing")]) == 2
    assert "not a testbed run directory" in capsys.readouterr().err
    (tmp_path / "sweep" / "report").mkdir(parents=True)  # what `compare runs/regimes/*` takes in after a sweep
    (tmp_path / "sweep" / "report" / "report.json").write_text('{"files": []}')
    assert main(["compare", *map(str, two_runs), str(tmp_path / "sweep" / "report")]) == 2
    assert "report: a report testbed wrote, not a run; leave it out" in capsys.readouterr().err
    assert main(["compare", *map(str, two_runs), "--out", str(tmp_path / "report"), "--samples", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "error: --samples -1 must be >= 0 (0 shows no sample text)"
    assert not (tmp_path / "report").exists()
    started = tmp_path / "started"  # killed during its generation 0
    started.mkdir()
    for name in ("config.yaml", "split.json"):
        shutil.copy(two_runs[0] / name, started / name)
    assert main(["compare", str(started)]) == 2
    assert capsys.readouterr().err.strip() == ("error: started: no finished generation to compare yet; run it first "
                                               "(testbed run resumes a run where it stopped)")


def test_runs_of_different_sweeps_keep_apart_by_their_folders(two_runs, tmp_path, monkeypatch):
    # Two seeds-only sweeps both name their runs seed=1.
    for run_dir, sweep in zip(two_runs, ("none", "detector")):
        (tmp_path / sweep).mkdir()
        run_dir.rename(tmp_path / sweep / "seed=1")
    runs = load_runs([tmp_path / "none" / "seed=1", tmp_path / "detector" / "seed=1"])
    assert [r["name"] for r in runs] == ["none/seed=1", "detector/seed=1"]
    assert "accumulate (detector/seed=1)" in table(runs)
    # A seed alone does not name a run: its sweep's (or arm's) folder comes with it, even for one run.
    assert [r["name"] for r in load_runs([tmp_path / "none" / "seed=1"])] == ["none/seed=1"]
    monkeypatch.chdir(tmp_path / "detector" / "seed=1")
    assert [r["name"] for r in load_runs(["."])] == ["detector/seed=1"]


def test_a_run_named_twice_is_one_run(two_runs, monkeypatch):
    replace, _ = two_runs
    monkeypatch.chdir(replace.parent)
    runs = load_runs([replace, "./replace", f"{replace}/"])
    assert [r["name"] for r in runs] == ["replace"]  # not three rows, nor //tmp/... names


def test_configs_that_differ_print_their_values_as_yaml(two_runs):
    replace, accumulate = two_runs
    for path, keep, model in ((replace, False, "m"), (accumulate, True, None)):  # Python would print False, None
        config = yaml.safe_load((path / "config.yaml").read_text())
        config["mix"]["keep_unfinished"], config["eval"]["embedding_model"] = keep, model
        (path / "config.yaml").write_text(yaml.safe_dump(config))
    lines = table(load_runs(two_runs)).splitlines()
    assert "  mix.keep_unfinished: false (replace), true (accumulate)" in lines
    assert "  eval.embedding_model: m (replace), null (accumulate)" in lines


def test_compare_options_that_would_do_nothing_are_refused(two_runs, capsys, tmp_path):
    assert main(["compare", str(two_runs[0]), "--metrics", ""]) == 2
    assert capsys.readouterr().err.strip() == ("error: --metrics '' names no metric; give metrics.jsonl keys separated "
                                               "by commas, e.g. --metrics heldout_ppl,recall_by_band.rare")
    assert main(["compare", str(two_runs[0]), "--samples", "2"]) == 2
    assert capsys.readouterr().err.strip() == "error: --samples 2 sets the sample text of the HTML report; add --out DIR"
    assert main(["compare", str(two_runs[0]), "--metrics", "heldout_ppl,heldout_ppl,recall_by_band.rare",
                 "--out", str(tmp_path / "r"), "--samples", "0"]) == 0
    header = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("run "))
    assert header.split() == ["run", "generations", "heldout_ppl", "recall_by_band.rare"]
    page = (tmp_path / "r" / "index.html").read_text()
    assert "Sample text" not in page and "metric_recall_by_band.rare.png" in page


def test_not_a_run_directory(tmp_path):
    with pytest.raises(TestbedError, match="no config.yaml"):
        load_run(tmp_path)


def test_a_null_or_nested_figure_is_a_dash_or_refused_never_a_traceback():
    """A metric undefined at generation 0 (null) or nested (recall_by_band) once crashed the table's formatting."""
    rows = [{"generation": 0, "rare_token_recall_rel": None, "recall_by_band": {"rare": 0.5}, "heldout_ppl": 2.0},
            {"generation": 1, "rare_token_recall_rel": 0.8, "recall_by_band": {"rare": 0.4}, "heldout_ppl": 3.0}]
    runs = [{"name": "r", "rows": rows, "planned": 1, "partial": False, "config": {"seed": 0}}]
    line = next(ln for ln in table(runs, ["rare_token_recall_rel", "heldout_ppl"]).splitlines() if ln.startswith("r "))
    assert line.split()[2:] == ["0.800", "2.000", "->", "3.000", "(+50%)"]
    rows[0]["rare_token_recall_rel"], rows[1]["rare_token_recall_rel"] = 0.9, None  # undefined at the last
    line = next(ln for ln in table(runs, ["heldout_ppl", "rare_token_recall_rel"]).splitlines() if ln.startswith("r "))
    assert line.split()[-1] == "-"
    with pytest.raises(TestbedError, match=r"no run has a number for 'recall_by_band'; available: .*recall_by_band\.rare"):
        table(runs, ["recall_by_band"])
    # A nested figure by its dotted path, as metrics.csv names it.
    line = next(ln for ln in table(runs, ["recall_by_band.rare"]).splitlines() if ln.startswith("r "))
    assert line.split()[2:] == ["0.500", "->", "0.400", "(-20%)"]


def test_the_closing_summary_prints_a_null_figure_as_a_dash():
    """eval.sample_words=1 leaves distinct_2 undefined (null); the summary at a run's end crashed on it, and on
    every later `testbed run` of that folder."""
    from testbed.report.compare import summary

    rows = [{"generation": g, "heldout_ppl": 2.0 + g, "distinct_2": None} for g in (0, 1)]
    lines = summary(rows).splitlines()
    assert lines[0].split() == ["generation", "heldout_ppl", "distinct_2"]
    assert [ln.split() for ln in lines[1:]] == [["0", "2.0000", "-"], ["1", "3.0000", "-"]]


def test_a_saved_config_that_a_check_added_since_would_refuse_still_reads(two_runs):
    """A run's config.yaml passed the checks of its day; a check added later (here: a detector under replace with
    nothing outside the pool to learn from, refused up front since) must not lock its folder away."""
    replace, _ = two_runs
    config = yaml.safe_load((replace / "config.yaml").read_text())
    config["curate"]["detector"]["enabled"] = True
    (replace / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(TestbedError, match="curate.detector learns from model text"):
        load_config(replace / "config.yaml")  # as input, refused
    assert load_run(replace)["config"]["curate"]["detector"]["enabled"] is True  # as a record, read
