"""testbed sweep --jobs N: runs at once on Ray, number for number the metrics of one at a time, resumable, and a failed
run reported without stopping the others."""
import shutil
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from testbed.cli import main  # noqa: E402

QUICKSTART = str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml")
# Seconds a run; data.docs=200 leaves enough human text for context 32.
TINY = ["generations=1", "data.docs=200", "data.heldout_docs=20", "tokenizer.vocab_size=512", "model.preset=nano",
        "model.context=32", "train.tokens=4000", "train.batch_size=8", "sample.size=40", "sample.batch_size=40",
        "eval.sample_words=500", "eval.truth_docs=20", "eval.confidence_docs=20", "eval.self_bleu_pairs=50"]
GRID = ["--set", "mix.regime=replace,accumulate", "--seeds", "0,1", "--threads", "1"]
RUNS = [f"mix.regime={r}_seed={s}" for r in ("replace", "accumulate") for s in (0, 1)]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (it takes seconds to start); the sweeps use it and leave it running."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="error")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def one_at_a_time(tmp_path_factory):
    """The 4-run sweep with --jobs 1, in this process, with ray made unimportable: that path must not need it.
    (Made before local_ray starts: Ray's own threads import ray modules while it runs.)"""
    root = tmp_path_factory.mktemp("serial") / "sweep"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "ray", None)
        assert main(["sweep", QUICKSTART, *GRID, "--jobs", "1", f"run_dir={root}", *TINY]) == 0
    return root


def metrics(root: Path, run: str) -> str:
    return (root / run / "metrics.jsonl").read_text()


@pytest.mark.e2e
def test_two_at_once_gives_the_metrics_of_one_at_a_time(tmp_path, one_at_a_time, local_ray, capsys):
    root = tmp_path / "sweep"
    assert main(["sweep", QUICKSTART, *GRID, "--jobs", "2", f"run_dir={root}", *TINY]) == 0
    out = capsys.readouterr().out
    assert "sweep: 4 runs, 2 at once on a local Ray, 1 torch thread each" in out
    assert "(2 done, 2 running, 0 left)" in out and "(4 done, 0 running, 0 left)" in out
    assert f"report: {root / 'report' / 'index.html'}" in out
    for run in RUNS:
        assert metrics(root, run) == metrics(one_at_a_time, run), run  # exact: the same threads, the same numbers
        # Each run's lines reach the driver whole and before its "finished" line: forwarded by Ray, they came
        # after it, and the last run's last lines not at all once Ray shut down.
        assert out.index(f"[{run}] gen 1/1 · eval") < out.index(f"sweep: finished {run} in"), run


def test_an_address_beside_a_ray_this_process_runs_is_refused(tmp_path, local_ray, capsys):
    """The runs went to the Ray already connected while the progress line named the address."""
    assert main(["sweep", QUICKSTART, "--seeds", "0", "--address", "10.255.255.1:6379", f"run_dir={tmp_path / 's'}",
                 *TINY]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --address 10.255.255.1:6379: this process is already connected to a Ray (ray.init was called before); "
        "leave out --address to run on it, or call ray.shutdown() first")
    assert not (tmp_path / "s").exists()


@pytest.mark.e2e
def test_a_killed_sweep_resumes_and_a_failed_run_stops_no_other(tmp_path, one_at_a_time, local_ray, capsys):
    root = tmp_path / "sweep"
    shutil.copytree(one_at_a_time, root)  # a finished run resumes from a copy: run_dir is not part of its identity
    finished, killed, lost, blocked = (root / r for r in RUNS)
    # As a kill leaves them: one run inside generation 1, one before it had a folder; and one folder that is no run.
    (killed / "gen_001").rename(killed / "gen_001.partial")
    (killed / "gen_001.partial" / "DONE").unlink()
    shutil.rmtree(lost)
    shutil.rmtree(blocked)
    blocked.mkdir()
    untouched = {p: p.stat().st_mtime_ns for p in (finished / "gen_000" / "DONE", finished / "gen_001" / "DONE",
                                                   killed / "gen_000" / "DONE")}

    args = ["sweep", QUICKSTART, *GRID, "--jobs", "2", f"run_dir={root}", *TINY]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert f"sweep: checking {finished.name} (" in captured.out and f"sweep: started {killed.name} (" in captured.out
    errors = captured.err.strip().splitlines()
    assert errors[0].startswith(f"error: run {blocked.name} failed: run_dir={blocked} ") and "not a testbed run" in errors[0]
    assert len(errors) == 2 and "1 run(s) failed, the others finished" in errors[1], errors
    assert f"report: {root / 'report' / 'index.html'}" in captured.out  # on the three that finished
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched  # finished generations are not made again
    for run in (finished, killed, lost):
        assert metrics(root, run.name) == metrics(one_at_a_time, run.name), run.name
    assert not (killed / "gen_001.partial").exists()

    blocked.rmdir()
    assert main(args) == 0
    assert metrics(root, blocked.name) == metrics(one_at_a_time, blocked.name)
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched


def test_ctrl_c_stops_every_running_run_as_it_stops_one(tmp_path, local_ray, monkeypatch, capsys):
    """A new run stopped before generation 0 finished leaves no folder (docs/run-directory.md). On Ray, the sweep
    cancelled its tasks and shut Ray down at once, killing the workers mid-cleanup: the half-made folders stayed,
    and the corrected sweep was refused as 'a different config'."""
    root = tmp_path / "sweep"
    real_wait = ray.wait

    def wait(refs, **kwargs):  # Ctrl-C in the driver, once every run is training its generation 0
        training = [p for p in root.glob("*/gen_000.partial") if (p / "log.txt").exists() or any(p.iterdir())]
        if kwargs.get("timeout") == 1.0 and len(training) == 2:
            raise KeyboardInterrupt()
        return real_wait(refs, **kwargs)
    monkeypatch.setattr(ray, "wait", wait)
    long = [*TINY, "train.tokens=2000000"]  # minutes: still training when the interrupt comes
    assert main(["sweep", QUICKSTART, "--set", "mix.regime=replace,accumulate", "--seeds", "0", "--jobs", "2",
                 "--threads", "1", f"run_dir={root}", *long]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not root.exists() or not list(root.iterdir()), list(root.iterdir())
