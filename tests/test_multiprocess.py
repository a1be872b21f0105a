"""One run across two processes, as accelerate spreads a run over several GPUs: here two CPU processes over gloo."""
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = ["generations=1", "data.docs=200", "data.heldout_docs=20", "tokenizer.vocab_size=512", "model.preset=nano",
        "model.context=32", "train.tokens=4000", "train.batch_size=8", "sample.size=40", "sample.batch_size=40",
        "eval.sample_words=500", "eval.truth_docs=20", "eval.confidence_docs=20", "eval.self_bleu_pairs=50",
        "curate.dedup.exact=true"]  # a curation step: the kept set is broadcast from the main process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.e2e
@pytest.mark.parametrize("use_cpu", ["1", None], ids=["ACCELERATE_USE_CPU=1", "a machine without a GPU"])
def test_a_run_across_two_processes_finishes_with_valid_metrics(tmp_path, use_cpu):
    if use_cpu is None and torch.cuda.is_available():
        pytest.skip("with a GPU the two processes would train on it")
    run_dir = tmp_path / "run"
    # `accelerate launch --cpu --num_processes 2` starts one process (its CPU launcher spreads only over mpirun);
    # --multi_gpu starts two through torchrun, and ACCELERATE_USE_CPU=1 keeps them on the CPU, talking over gloo.
    # Without a GPU testbed asks accelerate for the CPU itself, so the plain command works too.
    env = {k: v for k, v in os.environ.items() if k != "ACCELERATE_USE_CPU"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    if use_cpu:
        env["ACCELERATE_USE_CPU"] = use_cpu
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()),
               "-m", "testbed.cli", "run", str(ROOT / "configs" / "quickstart.yaml"), f"run_dir={run_dir}", *TINY]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["generation"] for r in rows] == [0, 1]
    for row in rows:
        for key in ("heldout_ppl", "distinct_2", "true_excess_ce", "self_bleu"):
            assert isinstance(row[key], float) and math.isfinite(row[key]), (key, row[key])
    for g in (0, 1):
        gen = run_dir / f"gen_{g:03d}"
        assert (gen / "DONE").exists() and not (run_dir / f"gen_{g:03d}.partial").exists()
        train = json.loads((gen / "train.json").read_text())
        assert train["environment"]["processes"] == 2  # not two single-process runs side by side
    assert json.loads((run_dir / "gen_001" / "curation.json").read_text())["steps"]
    assert done.stdout.count("gen 1/1 · eval") == 1  # one process speaks for the run
    assert "2 processes, training in fp32" in done.stdout

    # Each process trains on train.batch_size blocks a step: resumed in one, the run would go on with half the batch.
    from testbed.cli import main

    assert main(["run", str(ROOT / "configs" / "quickstart.yaml"), f"run_dir={run_dir}", *TINY, "generations=2"]) == 2
    assert not (run_dir / "gen_002").exists() and not (run_dir / "gen_002.partial").exists()


def launch(tmp_path, *argv) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "ACCELERATE_USE_CPU": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), "-m", "testbed.cli", *argv]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.e2e
def test_under_accelerate_launch_a_refusal_is_said_once_and_sweeps_and_labs_are_refused(tmp_path):
    """Each process printed the error, and a lab under accelerate launch ran whole in each, the two colliding."""
    bad = launch(tmp_path, "run", str(ROOT / "configs" / "quickstart.yaml"), f"run_dir={tmp_path / 'run'}", "train.lrr=1")
    assert bad.returncode != 0 and bad.stderr.count("error: unknown config key train.lrr") == 1, bad.stderr[-3000:]
    lab = launch(tmp_path, "lab", "run", "collapse", "--size", "reduced", "--out", str(tmp_path / "lab"))
    assert lab.stderr.count("error: testbed lab runs several runs, each in one process") == 1, lab.stderr[-3000:]
    assert not (tmp_path / "lab").exists() and not (tmp_path / "run").exists()
