"""testbed sweep: a grid of runs, checked before the first starts, resumable, ending in a report."""
import errno
import json
import socket
import sys
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
    # A quoted value keeps its commas, as the same value does as an override (data.separator='a,b' is a,b).
    assert parse_set(["data.separator='a,b',c"]) == [("data.separator", ["'a,b'", "c"])]
    assert parse_seeds("0,1,2") == [0, 1, 2] and parse_seeds(None) is None
    for bad, message in [(["mix.regime"], "is not key=v1,v2"), (["seed=1,2"], "use --seeds"),
                         (["run_dir=a,b"], r"^--set run_dir: the sweep names each run's folder under one run_dir; give it as an "
                                           r"override, run_dir=PATH$"),
                         (["a=1", "a=2"], "given twice"), (["mix.regime=replace,replace"], "repeats a value"),
                         (["data.separator='a,b"], "a quote is not closed"), (["x=[a,b"], "brackets do not pair up")]:
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
    # A model shape that no run could build, in the last grid point only: refused before the first run.
    with pytest.raises(TestbedError, match=r"model\.n_embd=128 must be divisible by model\.n_head=3"):
        plan(QUICKSTART, [f"run_dir={tmp_path / 'bad'}"], [("model.n_head", ["4", "3"])], None)
    assert not (tmp_path / "bad").exists()
    # Two values one folder name cannot tell apart: two workers would share it.
    with pytest.raises(TestbedError, match=r"would share the folder .*data\.path=a-b\.txt_seed=0"):
        plan(QUICKSTART, [f"run_dir={tmp_path / 'clash'}", "data.source=local"], [("data.path", ["a/b.txt", "a-b.txt"])], None)
    # A key the grid gives is one the config may need: data.path for data.source=local.
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text("a story\n")
    _, configs = plan(QUICKSTART, [f"run_dir={tmp_path / 'paths'}", "data.source=local"],
                      [("data.path", [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")])], None)
    assert [c.data.path for c in configs] == [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]
    # Swept and set: one of the two would be dropped without a word.
    with pytest.raises(TestbedError, match=r"^mix\.regime is both swept \(--set mix\.regime=\.\.\.\) and set "
                                           r"\(mix\.regime=\.\.\.\); give its values once, in --set$"):
        plan(QUICKSTART, [f"run_dir={tmp_path / 'both'}", "mix.regime=anchor"], [("mix.regime", ["replace"])], None)
    # seed= beside --seeds: the seeds won and the override was dropped without a word.
    with pytest.raises(TestbedError, match=r"^seed=5 and --seeds both set the seed; give the seeds once, in --seeds$"):
        plan(QUICKSTART, [f"run_dir={tmp_path / 'seeds'}", "seed=5"], [("mix.regime", ["replace"])], [0, 1])
    assert [c.seed for c in plan(QUICKSTART, [f"run_dir={tmp_path / 'seed5'}", "seed=5"], [], None)[1]] == [5]
    # Two spellings of one value: two folders holding the same run, trained twice.
    with pytest.raises(TestbedError, match=r"^--set: model\.n_head=1_seed=0 and model\.n_head=01_seed=0 are the same run"):
        plan(QUICKSTART, [f"run_dir={tmp_path / 'twice'}"], [("model.n_head", ["1", "01"])], None)


def test_a_sweep_runs_its_grid_resumes_and_reports(tmp_path, monkeypatch, capsys):
    root = tmp_path / "sweep"
    args = ["sweep", QUICKSTART, "--set", "mix.regime=replace,accumulate", f"run_dir={root}", *TINY]
    assert main(args) == 0
    runs = ["mix.regime=replace_seed=0", "mix.regime=accumulate_seed=0"]
    assert sorted(p.name for p in root.iterdir()) == sorted([*runs, "report", ".sweep.lock"])
    report = json.loads((root / "report" / "report.json").read_text())
    assert [r["name"] for r in report["runs"]] == runs and report["differing_keys"] == ["mix.regime"]
    assert f"report: {root / 'report' / 'index.html'}" in capsys.readouterr().out

    import testbed.loop

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")
    monkeypatch.setattr(testbed.loop, "train", no_training)
    assert main(args) == 0  # the same sweep again: every run is finished, only the report is rebuilt
    out = capsys.readouterr().out
    assert "generations 0 to 1 are all finished" in out
    # Checked, as the Ray path says it, and counted done only once run() has found it the same run: one whose
    # config changed since was announced as done and then failed.
    assert f"sweep: checking {runs[0]} (0 done, 1 running, 1 left)" in out
    assert f"sweep: checking {runs[1]} (1 done, 1 running, 0 left)" in out


def test_a_report_folder_of_the_users_stops_a_sweep_before_any_run(tmp_path, capsys):
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "notes.txt").write_text("mine")
    assert main(["sweep", QUICKSTART, "--seeds", "0,1", f"run_dir={tmp_path}", *TINY]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {tmp_path / 'report'}: exists and is not a report this testbed "
                                               "wrote (no report.json listing its files); move it away: the report goes there")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_a_second_sweep_on_the_same_folder_is_refused_before_any_run(tmp_path, capsys):
    """Two sweeps of one grid split it, each called the other's runs failed, and the report lost runs."""
    from testbed.rundir import os_lock

    root = tmp_path / "busy"
    root.mkdir()
    held = os_lock(root / ".sweep.lock")
    held.acquire()
    try:
        assert main(["sweep", QUICKSTART, f"run_dir={root}", "--set", "mix.regime=replace,accumulate"]) == 2
    finally:
        held.release()
    assert capsys.readouterr().err == (f"error: run_dir={root} is in use by another testbed sweep; wait for it (run it "
                                       "again after it to resume), or give this sweep another run_dir\n")
    assert sorted(p.name for p in root.iterdir()) == [".sweep.lock"]  # no run was started


def test_a_sweep_is_not_started_inside_a_single_run(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("")
    assert main(["sweep", QUICKSTART, "--seeds", "0,1", f"run_dir={tmp_path}"]) == 2
    assert "holds a single run" in capsys.readouterr().err


def test_jobs_without_ray_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: `import ray` raises ImportError
    root = tmp_path / "sweep"
    assert main(["sweep", QUICKSTART, "--seeds", "0,1", "--jobs", "2", f"run_dir={root}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --jobs 2 runs the runs on Ray, which is not installed") and "\n" not in err, err
    assert 'pip install -e ".[ray]"' in err and not root.exists()
    assert main(["sweep", QUICKSTART, "--seeds", "0,1", "--jobs", "0", f"run_dir={root}"]) == 2
    assert "--jobs 0 must be at least 1" in capsys.readouterr().err


def test_an_address_where_no_ray_cluster_listens_is_one_line(tmp_path, capsys):
    pytest.importorskip("ray")
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path / "sweep"
    assert main(["sweep", QUICKSTART, "--seeds", "0,1", "--address", f"127.0.0.1:{port}", f"run_dir={root}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --address 127.0.0.1:{port}: no Ray cluster listens there") and "\n" not in err, err
    assert not root.exists()


def _server(answer: bytes | None):
    """A port that reads what comes and answers it with `answer` (None: says nothing), in a thread."""
    import threading
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve():
        conn, _ = server.accept()
        with conn:
            conn.recv(1024)
            if answer is not None:
                conn.sendall(answer)
            else:
                conn.recv(1024)  # until the client gives up
    threading.Thread(target=serve, daemon=True).start()
    return server


def test_an_address_where_something_else_listens_is_one_line_in_seconds(tmp_path, capsys):
    """Ray's own ray.init retried a web server's port for 5.5 minutes before it gave up."""
    pytest.importorskip("ray")
    from testbed.parallel import _speaks_http2
    with _server(b"HTTP/1.0 400 Bad request\r\n\r\n") as web:
        port = web.getsockname()[1]
        root = tmp_path / "sweep"
        assert main(["sweep", QUICKSTART, "--seeds", "0,1", "--address", f"127.0.0.1:{port}", f"run_dir={root}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --address 127.0.0.1:{port}: something listens there but not a Ray head node") \
        and "\n" not in err, err
    assert not root.exists()
    with _server(None) as silent:
        assert not _speaks_http2("127.0.0.1", silent.getsockname()[1], timeout=0.5)
    with _server(bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])) as grpc:  # what a Ray head's gRPC server answers first
        assert _speaks_http2("127.0.0.1", grpc.getsockname()[1])


def test_a_failed_run_stops_no_other_and_is_reported_at_the_end(tmp_path, monkeypatch, capsys):
    import torch

    import testbed.loop
    import testbed.report.compare
    import testbed.report.page

    ran = []

    def run(cfg, say=print):
        ran.append((cfg.seed, torch.get_num_threads()))
        if cfg.seed == 1:
            raise TestbedError("generation 0: a stand-in failure")
        if cfg.seed == 2:
            raise RuntimeError("a stand-in bug")
        if cfg.seed == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(Path(cfg.run_dir) / "gen_000.partial"))
    monkeypatch.setattr(testbed.loop, "run", run)
    monkeypatch.setattr(testbed.report.compare, "load_runs", lambda dirs: dirs)
    monkeypatch.setattr(testbed.report.compare, "table", lambda runs: f"table of {len(runs)} runs")
    monkeypatch.setattr(testbed.report.page, "build", lambda runs, out, **_: out / "index.html")
    root = tmp_path / "sweep"
    threads = torch.get_num_threads()
    assert main(["sweep", QUICKSTART, "--seeds", "0,1,2,3,4", "--threads", str(threads + 1), f"run_dir={root}"]) == 1
    assert ran == [(s, threads + 1) for s in (0, 1, 2, 3, 4)]  # every run, each on --threads threads
    assert torch.get_num_threads() == threads  # and the caller's own setting back
    captured = capsys.readouterr()
    assert "table of 2 runs" in captured.out and f"report: {root / 'report' / 'index.html'}" in captured.out
    # A bug shows where it was; the full disk is said as `testbed run` says it, without a traceback.
    assert captured.out.count("Traceback") == 1 and "RuntimeError: a stand-in bug" in captured.out
    assert captured.err.splitlines() == [
        "error: run seed=1 failed: generation 0: a stand-in failure",
        "error: run seed=2 failed: RuntimeError: a stand-in bug",
        f"error: run seed=3 failed: {root / 'seed=3' / 'gen_000.partial'}: No space left on device; the disk is full: "
        "free space, then run the same command again (finished generations are kept)",
        "error: 3 run(s) failed, the others finished; fix the cause and run the same command again: finished runs are skipped"]


def test_a_sweep_or_lab_folder_under_a_file_is_refused_before_any_run(tmp_path, monkeypatch, capsys):
    import testbed.loop

    monkeypatch.setattr(testbed.loop, "run", lambda cfg, say=print: pytest.fail("a run started"))
    (tmp_path / "afile.txt").write_text("mine")
    assert main(["sweep", QUICKSTART, "--seeds", "0,1", f"run_dir={tmp_path / 'afile.txt'}"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: run_dir={tmp_path / 'afile.txt' / 'seed=0'}: {tmp_path / 'afile.txt'} is a file, so no folder can be "
        "made under it; choose another run_dir"]
    assert main(["lab", "run", "collapse", "--size", "reduced", "--out", str(tmp_path / "afile.txt")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: --out {tmp_path / 'afile.txt'} is a file; give the lab a folder"]
    assert (tmp_path / "afile.txt").read_text() == "mine"


def test_a_tracker_that_is_not_installed_stops_a_sweep_before_any_run(tmp_path, monkeypatch):
    import testbed.tracking

    monkeypatch.setattr(testbed.tracking, "is_wandb_available", lambda: False)
    with pytest.raises(TestbedError, match=r"^track: wandb needs the wandb package"):
        plan(QUICKSTART, [f"run_dir={tmp_path / 'sweep'}", "track=[wandb]"], [], [0, 1])
    assert not (tmp_path / "sweep").exists()


def test_every_corpus_file_of_the_grid_is_checked_before_any_run(tmp_path):
    """docs/compare.md promises it for --set data.path=a.txt,b.txt: the misspelt second file failed after the first run
    had trained. A lab plans its runs the same way."""
    (tmp_path / "a.txt").write_text("one story.\n\nanother story.\n", encoding="utf-8")
    with pytest.raises(TestbedError, match=r"^data\.path=.*corpsu\.txt: file not found"):
        plan(QUICKSTART, [f"run_dir={tmp_path / 'sweep'}", "data.source=local"],
             [("data.path", [str(tmp_path / "a.txt"), str(tmp_path / "corpsu.txt")])], None)
    assert not (tmp_path / "sweep").exists()
    _, configs = plan(QUICKSTART, [f"run_dir={tmp_path / 'sweep'}", "data.source=local"],
                      [("data.path", [str(tmp_path / "a.txt")])], None)
    assert [c.data.path for c in configs] == [str(tmp_path / "a.txt")]


def test_a_sweep_whose_every_run_failed_does_not_say_the_others_finished(tmp_path, monkeypatch, capsys):
    import testbed.loop

    def run(cfg, say=print):
        raise TestbedError("generation 0: a stand-in failure")
    monkeypatch.setattr(testbed.loop, "run", run)
    # The report of an earlier sweep in the same folder, whose runs this one could not resume: it would read as
    # this sweep's, so it goes, as a lab's does.
    (tmp_path / "sweep" / "report").mkdir(parents=True)
    (tmp_path / "sweep" / "report" / "index.html").write_text("earlier runs")
    (tmp_path / "sweep" / "report" / "report.json").write_text('{"files": ["index.html"]}')
    assert main(["sweep", QUICKSTART, "--seeds", "0,1", f"run_dir={tmp_path / 'sweep'}"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == ("error: 2 run(s) failed, none finished; fix the cause and run the "
                                                        "same command again: finished runs are skipped")
    assert not (tmp_path / "sweep" / "report").exists()
