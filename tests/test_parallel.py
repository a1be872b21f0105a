"""testbed/parallel.py: how runs at once share the GPUs Ray sees."""
from pathlib import Path

import pytest

from testbed.parallel import gpu_share

QUICKSTART = str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml")


@pytest.mark.parametrize("gpus, jobs, share", [
    ([0], 3, 0),              # no GPU: none asked for
    ([1], 1, 1),
    ([4], 3, 1),              # one each, as many as there are runs
    ([1], 2, 0.5),
    ([1], 3, 0.3333),         # 3 x 0.3333 fits in one GPU
    ([1], 7, 0.1428),         # 7 x 0.1428 = 0.9996 <= 1 (rounded to nearest, 0.1429 x 7 > 1: only 6 would run)
    ([2], 3, 0.5),            # two to a GPU: 3 runs on 2 GPUs
    ([1, 3], 6, 0.5),         # a cluster: GPUs counted over its nodes
])
def test_runs_at_once_share_the_gpus_there_are(gpus, jobs, share):
    assert gpu_share([{"CPU": 16, "GPU": g} for g in gpus], jobs) == share
    assert jobs * share <= sum(gpus) or share == 0


@pytest.mark.e2e
def test_two_runs_at_once_on_one_gpu_take_half_of_it_each(tmp_path, capsys):
    """Ray told of one GPU (a fake one here: torch still sees none, and the runs train on the CPU) runs both at
    once with half a GPU each, where a whole GPU a run left one waiting."""
    ray = pytest.importorskip("ray")
    from testbed.cli import main

    tiny = ["generations=0", "data.docs=200", "data.heldout_docs=20", "tokenizer.vocab_size=512", "model.preset=nano",
            "model.context=32", "train.tokens=4000", "sample.size=40", "sample.batch_size=40", "eval.sample_words=500",
            "eval.truth_docs=20", "eval.confidence_docs=20", "eval.self_bleu_pairs=50"]
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, logging_level="error")
    try:
        assert main(["sweep", QUICKSTART, "--seeds", "0,1", "--jobs", "2", "--threads", "1",
                     f"run_dir={tmp_path / 'sweep'}", *tiny]) == 0
    finally:
        ray.shutdown()
    out = capsys.readouterr().out
    assert "sweep: 2 runs, 2 at once on a local Ray, 1 torch thread and 1/2 of a GPU each" in out
    assert all((tmp_path / "sweep" / f"seed={s}" / "metrics.jsonl").is_file() for s in (0, 1)), out[-2000:]


def test_ray_init_leaves_the_commands_sigterm_handler_in_place(monkeypatch):
    """ray.init replaces the SIGTERM handler (and its core worker aborted on SIGTERM): the command's own must be back
    while the runs run, so that a terminated sweep says so and exits 143."""
    import signal

    ray = pytest.importorskip("ray")
    from testbed.parallel import on_ray

    def mine(signum, frame):
        pass
    previous = signal.signal(signal.SIGTERM, mine)
    try:
        monkeypatch.setattr(ray, "is_initialized", lambda: False)
        monkeypatch.setattr(ray, "init", lambda **kw: signal.signal(signal.SIGTERM, signal.SIG_DFL))
        monkeypatch.setattr(ray, "shutdown", lambda: None)
        with on_ray(2, 1, None):
            assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_note_on_the_settings_every_run_shares_is_said_once_a_sweep(tmp_path, monkeypatch):
    """A lab of 15 runs said "semantic_diversity off" 15 times; the runs' own lines are all still said."""
    from testbed import loop
    from testbed.config import load_config
    from testbed.parallel import run_all

    def fake_run(cfg, say):
        say("semantic_diversity off: eval.embedding_model is not set")
        say(f"[{cfg.seed}] semantic_diversity off: eval.embedding_model is not set")  # as a Ray run's line reads
        say(f"note: seed {cfg.seed}'s own figure")

    monkeypatch.setattr(loop, "run", fake_run)
    said = []
    runs = [(f"s{seed}", load_config(QUICKSTART, [f"seed={seed}", f"run_dir={tmp_path / str(seed)}"])) for seed in (0, 1)]
    assert run_all(runs, say=said.append) == {}
    assert sum("semantic_diversity off" in line for line in said) == 1
    assert [line for line in said if line.startswith("note:")] == ["note: seed 0's own figure", "note: seed 1's own figure"]
