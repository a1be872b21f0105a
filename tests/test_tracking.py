"""track: [tensorboard] / [wandb]: training curves and per-generation metrics through accelerate's trackers."""
import json
from pathlib import Path

import pytest

import testbed.loop as loop
import testbed.tracking as tracking
from testbed import TestbedError
from testbed.cli import main
from testbed.config import load_config
from testbed.metrics.spec import numbers
from testbed.rundir import RunDir

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"


def quiet(*args, **kwargs):
    pass


def read_scalars(folder: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) pairs as TensorBoard shows them, purges of killed attempts applied."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


@pytest.mark.e2e
def test_tensorboard_gets_each_generations_curve_and_the_metrics_once_across_a_resume(tmp_path, monkeypatch, tiny_run):
    pytest.importorskip("tensorboard")
    cfg = tiny_run(tmp_path / "run", "generations=1", "track=[tensorboard]")
    # Killed while sampling generation 1, after its training curve was logged: the resume trains it again.
    real_sample = loop.sample_corpus
    calls = []

    def killed_in_generation_1(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_sample(*args, **kwargs)

    monkeypatch.setattr(loop, "sample_corpus", killed_in_generation_1)
    with pytest.raises(KeyboardInterrupt):
        loop.run(cfg, say=quiet)
    monkeypatch.setattr(loop, "sample_corpus", real_sample)
    rows = loop.run(cfg, say=quiet)

    root = tmp_path / "run"
    for g in range(2):
        gen = root / f"gen_{g:03d}"
        steps = json.loads((gen / "train.json").read_text())["steps"]
        curve = root / "tracking" / f"gen_{g:03d}" / "testbed"
        loss = read_scalars(curve, "train/loss")
        # One point per optimizer step, from 1: generation 1's killed attempt is not shown twice.
        assert [s for s, _ in loss] == list(range(1, steps + 1)), g
        lrs = read_scalars(curve, "train/lr")
        assert [s for s, _ in lrs] == list(range(1, steps + 1)), g
        assert lrs[0][1] == 0.0  # the rate step 1 trained with: the first of the warmup, not the next step's
        last = (gen / "log.txt").read_text().splitlines()[-1]  # "step N/N loss X lr Y"
        assert loss[-1][1] == pytest.approx(float(last.split()[3]), abs=1e-4)

    metrics = root / "tracking" / "generations" / "testbed"
    for tag, value in [("heldout_ppl", lambda r: r["heldout_ppl"]), ("recall_by_band/rare", lambda r: r["recall_by_band"]["rare"])]:
        points = read_scalars(metrics, tag)
        assert [s for s, _ in points] == [0, 1], tag
        assert [v for _, v in points] == pytest.approx([value(r) for r in rows], rel=1e-6), tag

    # Tracking is not part of the run's identity: the run resumes with it turned off.
    RunDir(root).check_same_run(load_config(root / "config.yaml", ["track=[]"]),
                         json.loads((root / "split.json").read_text()))


@pytest.mark.e2e
def test_a_generation_0_shared_from_another_run_is_logged_as_step_0(tmp_path, tiny_run):
    """A lab's arms take generation 0 whole from one run (RunDir.start_from): their charts need it as a baseline."""
    pytest.importorskip("tensorboard")
    donor = loop.run(tiny_run(tmp_path / "donor", "generations=0"), say=quiet)
    cfg = tiny_run(tmp_path / "arm", "generations=1", "track=[tensorboard]")
    RunDir(cfg.run_dir).start_from(RunDir(tmp_path / "donor"), cfg)
    rows = loop.run(cfg, say=quiet)
    assert rows[0]["heldout_ppl"] == donor[0]["heldout_ppl"]
    points = read_scalars(tmp_path / "arm" / "tracking" / "generations" / "testbed", "heldout_ppl")
    assert [s for s, _ in points] == [0, 1]
    assert [v for _, v in points] == pytest.approx([r["heldout_ppl"] for r in rows], rel=1e-6)
    assert not (tmp_path / "arm" / RunDir.UNLOGGED).exists()
    loop.run(cfg, say=quiet)  # a rerun logs nothing again
    assert [s for s, _ in read_scalars(tmp_path / "arm" / "tracking" / "generations" / "testbed", "heldout_ppl")] == [0, 1]


@pytest.mark.parametrize("tracker", ["tensorboard", "wandb"])
def test_a_missing_tracker_package_stops_the_run_before_anything_is_written(tmp_path, monkeypatch, capsys, tracker):
    monkeypatch.setattr(tracking, f"is_{tracker}_available", lambda: False)
    cfg = load_config(QUICKSTART, [f"run_dir={tmp_path / 'run'}", f"track=[{tracker}]"])
    with pytest.raises(TestbedError, match=rf'track: {tracker} needs the {tracker} package.*pip install -e "\.\[{tracker}\]"'):
        loop.run(cfg, say=quiet)
    assert not (tmp_path / "run").exists()
    # The command line prints it as one line and exits 2.
    assert main(["run", str(QUICKSTART), f"run_dir={tmp_path / 'run'}", f"track=[{tracker}]"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: track: {tracker} needs") and "\n" not in err
    assert not (tmp_path / "run").exists()


def test_metrics_rows_become_flat_scalars():
    row = {"generation": 2, "heldout_ppl": 3.5, "distinct_2": 0.1, "eval_words": 1500, "heldout_ppl_rare": None,
           "recall_by_band": {"rare": 0.1, "middle": 0.5, "common": 0.9}, "recall_by_band_rel": {"rare": None},
           "train_mix": {"synthetic:gen_001": 80}, "curation": [{"step": "dedup"}], "comparable": True}
    assert numbers(row) == {"generation": 2, "heldout_ppl": 3.5, "distinct_2": 0.1, "eval_words": 1500, "recall_by_band/rare": 0.1,
                                 "recall_by_band/middle": 0.5, "recall_by_band/common": 0.9,
                                 "train_mix/synthetic:gen_001": 80}
    assert numbers(row, ".")["recall_by_band.rare"] == 0.1


def test_the_wandb_run_of_the_metrics_keeps_its_id_when_the_run_is_extended(tmp_path):
    """Extending a run rewrites config.yaml (its generations); its metrics must go on in the same W&B run."""
    import os
    from dataclasses import replace
    from types import SimpleNamespace

    from testbed.config import to_yaml

    cfg = replace(load_config(QUICKSTART), run_dir=str(tmp_path / "run"), track=["wandb"], generations=2)
    root = tmp_path / "run"
    root.mkdir()
    (root / "config.yaml").write_text(to_yaml(cfg))
    (root / "split.json").write_text("{}")
    inits = []
    accelerator = SimpleNamespace(log_with=["wandb"], trackers=[], is_main_process=True,
                                  project_configuration=SimpleNamespace(logging_dir=None),
                                  init_trackers=lambda project, init_kwargs: inits.append(init_kwargs["wandb"]))
    tracker = tracking.Tracking(accelerator, root, cfg)
    tracker.open("generations")
    os.utime(root / "config.yaml", ns=(1, 1))  # as a later write would move it
    RunDir(root).record_generations(replace(cfg, generations=4))
    tracker.open("generations")
    assert len(inits) == 2 and inits[0]["id"] == inits[1]["id"] and inits[0]["resume"] == "allow"
    other = tmp_path / "other"
    other.mkdir()
    (other / "split.json").write_text("{}")
    tracking.Tracking(accelerator, other, cfg).open("generations")
    assert inits[2]["id"] != inits[0]["id"]  # another run directory, another W&B run
