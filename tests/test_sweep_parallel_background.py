"""Ctrl-C of a sweep on a Ray started from a background job: such a process ignores SIGINT, and so do the Ray
workers it starts, where ray.cancel raises its KeyboardInterrupt. CI ran so, and the runs went on undisturbed."""
import signal
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from test_sweep_parallel import QUICKSTART, TINY  # noqa: E402
from testbed.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def ray_ignoring_sigint():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="error")
    finally:
        signal.signal(signal.SIGINT, before)
    yield
    ray.shutdown()


def test_ctrl_c_stops_runs_on_workers_that_ignore_sigint(tmp_path, ray_ignoring_sigint, monkeypatch, capsys):
    root = tmp_path / "sweep"
    real_wait = ray.wait

    def wait(refs, **kwargs):  # Ctrl-C in the driver, once both runs are training their generation 0
        if kwargs.get("timeout") == 1.0 and len([p for p in root.glob("*/gen_000.partial") if any(p.iterdir())]) == 2:
            raise KeyboardInterrupt()
        return real_wait(refs, **kwargs)
    monkeypatch.setattr(ray, "wait", wait)
    assert main(["sweep", QUICKSTART, "--set", "mix.regime=replace,accumulate", "--seeds", "0", "--jobs", "2",
                 "--threads", "1", f"run_dir={root}", *TINY, "train.tokens=2000000"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not root.exists() or not list(root.iterdir()), list(root.iterdir())
