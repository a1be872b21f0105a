"""testbed compare --out: the HTML report, its plots and its numbers."""
import csv
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from testbed import TestbedError
from testbed.cli import main
from testbed.loop import run
from testbed.metrics import spec
from testbed.report.compare import load_run, table
from testbed.report.page import build, highlight, log2_bands, page_data, render, seed_groups

WORLD = ("data.source=storyworld", "data.docs=300", "data.heldout_docs=30", "generations=1", "eval.truth_docs=20")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_run):
    """Two one-generation storyworld runs that differ in regime, and one more seed of the first."""
    root = tmp_path_factory.mktemp("runs")
    for name, extra in [("replace", ()), ("replace-seed1", ("seed=1",)), ("accumulate", ("mix.regime=accumulate",))]:
        run(tiny_run(root / name, *WORLD, *extra), say=lambda *a: None)
    return root


def referenced(page: str) -> list[str]:
    return re.findall(r"(?:src|href)='([^']+)'", page)


def test_report_files_exist_are_valid_and_match_the_runs(runs, tmp_path):
    loaded = [load_run(runs / n) for n in ("replace", "replace-seed1", "accumulate")]
    index = build(loaded, tmp_path / "report", samples=2)
    folder = index.parent
    page = index.read_text()
    links = referenced(page)
    assert links and all((folder / f).is_file() for f in links)
    pngs = sorted(folder.glob("*.png"))
    assert {p.name for p in pngs} <= set(links)  # nothing drawn that the page does not show
    for p in pngs:
        with Image.open(p) as im:
            im.verify()
            assert im.format == "PNG"
    for name in ("overview.png", "metric_heldout_ppl.png", "metric_rare_token_recall.png",
                 "zipf_0.png", "zipf_2.png", "bands_0.png", "bands_2.png"):
        assert name in links, name
    # The numbers: every generation of every run, in the CSV and the JSON alike.
    rows = list(csv.DictReader(open(folder / "metrics.csv")))
    assert [(r["run"], r["generation"]) for r in rows] == [
        (n, g) for n in ("replace", "replace-seed1", "accumulate") for g in ("0", "1")]
    # Grouped over seeds without parsing names: each row's seed and its group, the legend's label.
    assert [(r["group"], r["seed"]) for r in rows[::2]] == [
        ("replace (2 seeds: 0, 1)", "0"), ("replace (2 seeds: 0, 1)", "1"), ("accumulate", "0")]
    first = loaded[0]["rows"][1]
    assert float(rows[1]["heldout_ppl"]) == first["heldout_ppl"]
    assert float(rows[1]["recall_by_band.rare"]) == first["recall_by_band"]["rare"]
    data = json.loads((folder / "report.json").read_text())
    assert [r["name"] for r in data["runs"]] == ["replace", "replace-seed1", "accumulate"]
    assert data["differing_keys"] == ["mix.regime", "seed"]
    assert data["runs"][0]["environment"][0]["versions"]["testbed"]
    # The header: the config diff, and where the runs were made.
    assert "<td>mix.regime</td><td>replace</td><td>replace</td><td>accumulate</td>" in page
    assert "cpu: " in page and "torch " in page
    # The final table: last value, change from generation 0, generation 0's value.
    last, base = first["heldout_ppl"], loaded[0]["rows"][0]["heldout_ppl"]
    assert f"{last:.4g} (" in page and f"gen 0: {base:.4g}" in page
    # The final table's columns: the metric table's plotted keys the runs have a number for, headline first.
    have = [k for k in spec.plotted() if any(isinstance(row.get(k), (int, float)) for r in loaded for row in r["rows"])]
    header = re.findall(r"<th>([^<]+)</th>", re.search(r"<th>run</th><th>generation</th>(.*?)</tr>", page).group(1))
    assert sorted(header) == sorted(have) and {"grammar_rate", "self_ppl"} <= set(header)
    assert header[:3] == ["heldout_ppl", "distinct_2", "rare_token_recall"]
    # Two seeds of one config are one line with a band; the other regime is its own.
    assert [g["label"] for g in seed_groups(loaded)] == ["replace (2 seeds: 0, 1)", "accumulate"]
    # Sample text from generation 0 and the last generation of each run.
    assert page.count("<h4>generation 0</h4>") == 3 and page.count("<h4>generation 1</h4>") == 3


def test_the_cli_writes_the_report_and_replaces_only_a_report(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["compare", str(runs / "replace"), str(runs / "accumulate"), "--out", str(out), "--samples", "1"]) == 0
    assert f"report: {out / 'index.html'}" in capsys.readouterr().out
    # A plot an earlier report drew (its manifest lists it) and this one does not: rebuilt whole, it is gone.
    manifest = json.loads((out / "report.json").read_text())
    (out / "report.json").write_text(json.dumps({**manifest, "files": manifest["files"] + ["stale.png"]}))
    (out / "stale.png").write_bytes(b"")
    assert main(["compare", str(runs / "replace"), "--out", str(out)]) == 0
    assert not (out / "stale.png").exists() and (out / "index.html").exists()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    assert main(["compare", str(runs / "replace"), "--out", str(other)]) == 2
    assert "exists and is not a report this testbed wrote" in capsys.readouterr().err
    assert (other / "mine.txt").read_text() == "keep" and not list(tmp_path.glob(".*.tmp"))
    made = tmp_path / "made-first"  # mkdir first, then compare --out into it: nothing there to lose
    made.mkdir()
    assert main(["compare", str(runs / "replace"), "--out", str(made)]) == 0 and (made / "index.html").exists()


def test_a_killed_run_is_reported_partial_not_dropped(runs, tmp_path):
    killed = tmp_path / "killed"
    shutil.copytree(runs / "replace", killed)
    (killed / "gen_001" / "DONE").unlink()
    (killed / "gen_001").rename(killed / "gen_001.partial")
    loaded = load_run(killed)
    assert loaded["partial"] and loaded["missing"] == [1] and loaded["unfinished"] == [1]
    page = build([load_run(runs / "accumulate"), loaded], tmp_path / "report").read_text()
    assert "1 of 2 generations finished" in page and "unfinished (killed or still running): gen_001.partial" in page
    assert "missing: 1" not in page  # named once, as the generation begun, not also as one never made
    assert "<td>killed</td><td>0 of 1</td>" in page  # its last finished generation is 0
    shutil.rmtree(killed / "gen_001.partial")
    page = build([load_run(runs / "accumulate"), load_run(killed)], tmp_path / "report").read_text()
    assert "missing: 1" in page and ".partial" not in page


def test_a_run_that_lost_generation_0_is_measured_from_the_generation_it_has_and_says_which(runs, tmp_path):
    """The table called generation 1's value "gen 0" and measured the change from it."""
    lost = tmp_path / "lost"
    shutil.copytree(runs / "replace", lost)
    shutil.rmtree(lost / "gen_000")
    loaded = load_run(lost)
    first = loaded["rows"][0]
    assert first["generation"] == 1
    page = build([loaded], tmp_path / "report").read_text(encoding="utf-8")
    assert f"gen 1: {first['heldout_ppl']:.4g}" in page and "gen 0:" not in page
    assert "<h1>testbed report</h1>" in page and "Verdict:" not in page  # not a lab's page
    line = next(ln for ln in table([loaded], ["heldout_ppl"]).splitlines() if ln.startswith("lost"))
    assert f"{first['heldout_ppl']:.3f} (gen 1) -> {first['heldout_ppl']:.3f} (+0%)" in line


def test_the_report_is_utf8_whatever_the_locale_and_out_may_be_the_folder_it_stands_in(tiny_run, tmp_path, monkeypatch,
                                                                                         capsys):
    """Under an ASCII locale a story with "é" in it stopped the build with a traceback, and --out . from inside
    a report raised one too."""
    import os
    import random
    import subprocess
    import sys

    rng = random.Random(0)
    words = "zoë ate a crêpe at the café with her naïve friend and they were happy".split()
    corpus = tmp_path / "accents.txt"
    corpus.write_text("".join(" ".join(rng.choice(words) for _ in range(12)) + ".\n" for _ in range(400)), encoding="utf-8")
    named = tmp_path / "accents"
    run(tiny_run(named, f"data.path={corpus}", "data.separator=line", "generations=0"), say=lambda *a: None)
    out = tmp_path / "report"
    ascii_locale = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    done = subprocess.run([sys.executable, "-c", "import sys; from testbed.cli import main; sys.exit(main(sys.argv[1:]))",
                           "compare", str(named), "--out", str(out)], env=ascii_locale, capture_output=True, text=True,
                          encoding="utf-8", errors="replace")
    assert done.returncode == 0, done.stderr
    assert "crêpe" in (out / "index.html").read_text(encoding="utf-8")
    monkeypatch.chdir(out)
    assert main(["compare", str(named), "--out", "."]) == 0
    assert (out / "index.html").exists() and not list(tmp_path.glob(".*")) and not list(out.glob(".*"))
    capsys.readouterr()
    assert main(["compare", str(named), "--out", ""]) == 2
    assert capsys.readouterr().err.strip() == "error: --out is empty; give the report's folder, e.g. --out reports/regimes"


def test_without_the_human_corpus_the_report_says_so(runs, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(runs / "replace", moved)
    config = (moved / "config.yaml").read_text().replace("docs: 300", "docs: 301")  # a different human corpus
    (moved / "config.yaml").write_text(config)
    page = build([load_run(moved)], tmp_path / "report").read_text()
    assert "human reference unavailable: the human corpus changed since the run" in page
    assert "zipf_0.png" in page and "bands_0.png" not in page


def test_unknown_metric_is_refused(runs, tmp_path):
    with pytest.raises(TestbedError, match="no run has 'nope'"):
        build([load_run(runs / "replace")], tmp_path / "report", metrics=["nope"])
    assert not (tmp_path / "report").exists()


def test_chosen_metrics_are_drawn_and_shown_beside_the_overview(runs, tmp_path):
    index = build([load_run(runs / "replace")], tmp_path / "report", metrics=["self_ppl"], samples=1)
    page = index.read_text()
    assert {p.name for p in index.parent.glob("*.png")} <= set(referenced(page))
    assert "overview.png" in referenced(page) and "metric_self_ppl.png" in referenced(page)
    assert "metric_heldout_ppl.png" not in page


def test_the_page_escapes_what_it_shows_but_the_marked_sample_text():
    run = {"name": "<b>mine</b>", "path": Path("runs/x"), "finished": [0, 1], "planned": 1, "missing": [],
           "unfinished": [], "environment": [], "config": {},
           "rows": [{"generation": 0}, {"generation": 1, "heldout_ppl": 2.0}]}
    text = [{"run": run["name"], "columns": [{"generation": 0, "docs": [highlight("a <i> zebra", {"zebra"})]}]}]
    page = render(page_data([run], [], [], ["heldout_ppl"], [], text))
    assert "<b>mine</b>" not in page and page.count("&lt;b&gt;mine&lt;/b&gt;") == 3  # runs table, final table, sample text
    assert "a &lt;i&gt; <mark>zebra</mark>" in page and "<td>2</td>" in page  # no generation 0 to compare with: the value alone


def test_log2_bands_by_hand():
    labels, band_of = log2_bands(Counter({"a": 1, "b": 2, "c": 3, "d": 4, "e": 9}))
    assert labels == ["1", "2-3", "4-7", "8-15"]
    assert band_of == {"a": 0, "b": 1, "c": 1, "d": 2, "e": 3}


def test_highlight_marks_rare_words_and_escapes_the_rest():
    assert highlight('Tom saw a <Zebra> & said "hi"', {"zebra", "hi"}) == (
        'Tom saw a &lt;<mark>Zebra</mark>&gt; &amp; said &quot;<mark>hi</mark>&quot;')


def test_seed_groups_join_runs_that_differ_only_in_seed():
    def fake(name, seed, regime, track=()):
        return {"name": name, "partial": False,
                "config": {"seed": seed, "run_dir": name, "mix": {"regime": regime}, "track": list(track)}}
    groups = seed_groups([fake("a_seed=0", 0, "replace"), fake("a_seed=1", 1, "replace", ["tensorboard"]),
                          fake("b", 0, "anchor")])
    assert [g["label"] for g in groups] == ["a (2 seeds: 0, 1)", "b"]
    assert [len(g["runs"]) for g in groups] == [2, 1]
    # A seeds-only sweep's runs are named seed=N; the group takes the sweep folder's name.
    sweep = [{**fake(f"seed={s}", s, "replace"), "path": Path("runs/none") / f"seed={s}"} for s in (0, 1)]
    assert [g["label"] for g in seed_groups(sweep)] == ["none (2 seeds: 0, 1)"]
    # A second run of seed 0 (a rerun on another machine) is not a third seed: it makes a group of its own.
    groups = seed_groups([fake("a_seed=0", 0, "replace"), fake("a_seed=1", 1, "replace"), fake("gpu/a_seed=0", 0, "replace")])
    assert [g["label"] for g in groups] == ["a (2 seeds: 0, 1)", "gpu/a_seed=0"]
    # Seeds taken to different generations: the label says the mean covers only what all of them have.
    rows = lambda n: [{"generation": g} for g in range(n + 1)]  # noqa: E731
    groups = seed_groups([{**fake("a_seed=0", 0, "replace"), "rows": rows(2)}, {**fake("a_seed=1", 1, "replace"), "rows": rows(1)}])
    assert [g["label"] for g in groups] == ["a (2 seeds: 0, 1) (generations all seeds have)"]


def test_a_groups_mean_is_drawn_only_where_every_seed_has_a_value():
    """Seed 0 went on to generation 2, seed 1 stopped at 1: a mean at generation 2 would be seed 0 alone."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from testbed.report.plots import draw_metric
    runs = [{"rows": [{"generation": 0, "m": 1.0}, {"generation": 1, "m": 3.0}, {"generation": 2, "m": 9.0}]},
            {"rows": [{"generation": 0, "m": 2.0}, {"generation": 1, "m": 5.0}]}]
    fig, ax = plt.subplots()
    draw_metric(ax, "m", [{"label": "a", "runs": runs}], direction=1)
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [0, 1] and list(line.get_ydata()) == [1.5, 4.0]
    plt.close(fig)


def test_out_replaces_only_a_report_it_wrote_and_never_a_users_files(runs, tmp_path):
    loaded = [load_run(runs / "replace")]
    out = tmp_path / "report"
    build(loaded, out, samples=1)
    listed = json.loads((out / "report.json").read_text())["files"]
    assert "index.html" in listed and sorted(p.name for p in out.iterdir()) == sorted(listed + ["report.json"])
    build(loaded, out, samples=1)  # its own report: replaced
    (out / "notes.txt").write_text("mine")
    with pytest.raises(TestbedError, match=r"holds files the report did not write \(notes.txt\)"):
        build(loaded, out, samples=1)
    assert (out / "notes.txt").read_text() == "mine" and (out / "index.html").exists()
    # A user's folder that merely has a report.json of its own is not a report.
    mine = tmp_path / "mine"
    (mine / "data").mkdir(parents=True)
    (mine / "report.json").write_text('{"quarterly": 1}')
    (mine / "data" / "x.csv").write_text("1")
    with pytest.raises(TestbedError, match=r"not a report this testbed wrote"):
        build(loaded, mine, samples=1)
    assert (mine / "data" / "x.csv").read_text() == "1" and (mine / "report.json").read_text() == '{"quarterly": 1}'


def test_reports_built_into_one_folder_at_once_all_succeed_and_leave_one_whole_report(tmp_path, monkeypatch):
    """Several `lab run` processes sharing one --out (one per seed) each rebuild OUT/report when they finish."""
    import threading
    import traceback

    from testbed.report import page

    def write(runs, folder, metrics, samples, lab):  # a report of many files, so replacing one takes a while
        for i in range(40):
            (folder / f"f{i}.txt").write_text(str(runs))
        (folder / "report.json").write_text(json.dumps({"files": [f"f{i}.txt" for i in range(40)]}))

    monkeypatch.setattr(page, "_write", write)
    out, errors = tmp_path / "report", []

    def builder(n):
        try:
            for _ in range(15):
                build([n], out)
        except Exception:  # noqa: BLE001 - every failure is reported below, with its traceback
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=builder, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [], errors[0]
    texts = {(out / f"f{i}.txt").read_text() for i in range(40)}
    assert len(texts) == 1  # one builder's report, whole
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no temporary folder left behind


def test_word_pictures_count_what_the_model_wrote_after_a_human_prompt(tmp_path, tiny_run, monkeypatch):
    """sample.prompt=human: the metrics count only the continuation, and so must the report's word pictures."""
    from testbed.report import page
    from testbed.rundir import read_jsonl

    run(tiny_run(tmp_path / "run", *WORLD, "sample.prompt=human", "sample.prompt_tokens=4"), say=lambda *a: None)
    rows = read_jsonl(tmp_path / "run" / "gen_001" / "corpus.jsonl")
    assert all(r["text"].endswith(r["written"]) and r["text"] != r["written"] for r in rows if r["tokens"])
    seen = []
    sample = page.fixed_size_sample
    monkeypatch.setattr(page, "fixed_size_sample", lambda docs, *a: seen.append(docs) or sample(docs, *a))
    page.word_pictures(load_run(tmp_path / "run"), 0, tmp_path)
    assert seen[1] == [r["written"] for r in rows]  # generation 1's corpus, after generation 0's


def test_a_cell_is_red_only_where_a_collapse_signal_moved_at_least_one_percent_its_way():
    # accumulate's seeds had 9 of 15 cells red (distinct_2 -2.4%, self_ppl -5.7%, heldout_ppl +0.2%) while replace,
    # the arm that collapsed, had distinct_2 +56% in black: red pointed at the arm that held.
    from testbed.report.page import _cell, _marked

    assert _marked("heldout_ppl") == 1 and _marked("recall_by_band.rare") == -1
    assert _marked("distinct_2") == 0 and _marked("self_ppl") == 0
    assert _cell(2.0, 2.1, _marked("heldout_ppl"))["toward"]
    assert not _cell(2.0, 2.004, _marked("heldout_ppl"))["toward"], "+0.2%: a draw's noise"
    assert not _cell(0.10, 0.09, _marked("distinct_2"))["toward"]
    assert _cell(0.5, 0.33, _marked("recall_by_band.rare"))["toward"]
    assert not _cell(0.5, 0.6, _marked("recall_by_band.rare"))["toward"]


def test_a_build_clears_what_a_killed_build_left_beside_the_report_and_nothing_fresher(tmp_path, monkeypatch):
    """kill -9 during a build left .report.XXXX.tmp (a few hundred kB) for good: no later build removed it."""
    import os
    import time

    from testbed.report import page

    monkeypatch.setattr(page, "_write", lambda runs, folder, metrics, samples, lab: (
        (folder / "report.json").write_text('{"files": []}')))
    old, fresh = tmp_path / ".report.dead1.tmp", tmp_path / ".report.live2.tmp"
    aside = tmp_path / ".report.dead3.old"
    for folder in (old, fresh, aside):
        folder.mkdir()
        (folder / "index.html").write_text("half")
    hours_ago = time.time() - (page.STALE_HOURS * 3600 + 60)
    for folder in (old, aside):
        os.utime(folder, (hours_ago, hours_ago))
    build([], tmp_path / "report")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".report.live2.tmp", "report"]  # another build's, maybe
