"""testbed/device.py: the accelerator a run trains with, its precision, and the record of the machine."""
import time

import pytest
import torch
from accelerate import Accelerator

from testbed import TestbedError
from testbed.config import TrainConfig


def tcfg(**kw):
    kw.setdefault("batch_size", 4)
    kw.setdefault("mixed_precision", "fp32")
    return TrainConfig(**kw)


def test_a_gpu_machine_launched_on_its_cpu_trains_in_the_cpus_precision(tmp_path, monkeypatch):
    """accelerate launch --cpu sets ACCELERATE_USE_CPU: `auto` picked bf16 for the GPU while the run trained on
    a CPU that may be slower in it."""
    import testbed.device as t
    from accelerate.state import AcceleratorState

    monkeypatch.setattr(t.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(t.torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    monkeypatch.setattr(t, "fast_cpu_bf16", lambda: False)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "1")
    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        accelerator = t.make_accelerator(tcfg(mixed_precision="auto"), [], str(tmp_path))
        assert accelerator.device.type == "cpu" and accelerator.mixed_precision == "no"
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.parametrize("cuda, cuda_bf16, cpu_bf16, expected", [
    (True, "native", False, "bf16"), (True, None, True, "no"),  # a GPU decides by itself, whatever the CPU has
    (True, "emulated", False, "no"),  # a V100 or T4: torch runs bf16 there by emulating it, slower than fp32
    (False, None, True, "bf16"), (False, None, False, "no"),  # a CPU slower in bf16 (or emulating it): fp32
])
def test_auto_precision_is_bf16_where_the_device_multiplies_it_faster(monkeypatch, cuda, cuda_bf16, cpu_bf16, expected):
    import testbed.device as t
    monkeypatch.setattr(t.torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(t.torch.cuda, "is_bf16_supported", lambda including_emulation=True: (
        cuda_bf16 == "native" or (including_emulation and cuda_bf16 == "emulated")))
    monkeypatch.setattr(t, "fast_cpu_bf16", lambda: cpu_bf16)
    assert t.precision("auto") == expected
    assert t.precision("auto", "cpu") == ("bf16" if cpu_bf16 else "no")  # the CPU of a GPU machine
    assert t.precision("fp32") == "no" and t.precision("bf16") == "bf16"


@pytest.mark.parametrize("flagged, bf16_ms, fp32_ms, expected", [
    (False, 1.0, 2.0, False),  # no AVX512-BF16 or AMX: emulated, never timed
    (True, 1.0, 2.0, True),  # bf16 twice as fast: AMD's AVX512-BF16
    (True, 1.6, 0.8, False),  # bf16 at half fp32's speed: the Xeon VM that reports AVX512-BF16 without AMX
    (True, 0.95, 1.0, False),  # a near tie stays in fp32
    (True, 0.85, 1.0, True),  # 1.18x: clearly faster
])
def test_a_cpu_trains_in_bf16_only_where_its_flags_say_so_and_bf16_multiplies_clearly_faster(
        monkeypatch, flagged, bf16_ms, fp32_ms, expected):
    import testbed.device as t
    timed = []
    monkeypatch.setattr(t.torch.cpu, "_is_avx512_bf16_supported", lambda: flagged)
    monkeypatch.setattr(t.torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(t, "matmul_seconds", lambda dtypes: timed.append(dtypes) or
                        [{t.torch.bfloat16: bf16_ms, t.torch.float32: fp32_ms}[d] / 1e3 for d in dtypes])
    t.fast_cpu_bf16.cache_clear()
    try:
        assert t.fast_cpu_bf16() is expected
        assert t.fast_cpu_bf16() is expected and len(timed) == (1 if flagged else 0)  # timed once a process
    finally:
        t.fast_cpu_bf16.cache_clear()  # the real answer for the tests after this one


def test_matmul_seconds_times_a_real_product_in_the_dtype_asked_and_leaves_torchs_draws_alone():
    from testbed.device import matmul_seconds

    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    fp32, bf16 = matmul_seconds((torch.float32, torch.bfloat16), size=64, repeats=2)
    assert 0 < fp32 < 1 and 0 < bf16 < 1
    assert torch.equal(torch.rand(3), expected), "timing must not move the seeded draws after it"


def test_matmul_seconds_leaves_the_thread_setting_alone_and_times_in_turns(monkeypatch):
    """A probe on one thread (set, then set back) changed the rounding of every later fp32 training step on the
    Xeon: a lab's generation 0 came out at another held-out perplexity (2.4126 against 2.4446) than the same run the
    day before. Turns spread over time let a loaded CPU's stalls miss one dtype's every product."""
    from testbed.device import matmul_seconds

    monkeypatch.setattr(torch, "set_num_threads", lambda n: pytest.fail("the probe set the thread count"))
    stamps = []
    real = time.perf_counter
    monkeypatch.setattr(time, "perf_counter", lambda: stamps.append(real()) or stamps[-1])
    matmul_seconds((torch.float32, torch.bfloat16), size=8, repeats=3)
    assert len(stamps) == 12 and stamps[-1] - stamps[0] >= 2 * 0.005  # fp32, bf16 in turn, with pauses between


def test_sampling_and_scoring_run_in_fp32_on_a_cpu_whatever_training_runs_in():
    from types import SimpleNamespace

    from testbed.device import inference_autocast

    cpu = SimpleNamespace(device=torch.device("cpu"), autocast=object())  # as an Accelerator(mixed_precision="bf16")
    assert inference_autocast(cpu) is None
    gpu = SimpleNamespace(device=torch.device("cuda"), autocast=object())
    assert inference_autocast(gpu) is gpu.autocast


def test_runs_in_one_process_may_differ_in_precision(tmp_path):
    """A sweep or lab runs one run after another in one process; an arm at fp32 after one in bf16 must not
    stop on accelerate's one-precision-per-process state."""
    from testbed.device import make_accelerator

    assert make_accelerator(tcfg(mixed_precision="bf16"), [], str(tmp_path)).mixed_precision == "bf16"
    assert make_accelerator(tcfg(mixed_precision="fp32"), [], str(tmp_path)).mixed_precision == "no"
    assert make_accelerator(tcfg(mixed_precision="bf16"), [], str(tmp_path)).mixed_precision == "bf16"


def test_a_mac_trains_on_its_cpu_not_on_mps(tmp_path, monkeypatch):
    """accelerate puts a run on Apple's MPS device where there is one, before CUDA or the CPU; the sampler
    draws in float64, which MPS lacks, so a student's Mac would stop after training generation 0."""
    if torch.cuda.is_available():
        pytest.skip("with CUDA the run is on the GPU")
    import accelerate.state
    from accelerate.state import AcceleratorState

    from testbed.device import make_accelerator
    monkeypatch.setattr(accelerate.state, "is_mps_available", lambda *args, **kwargs: True)
    monkeypatch.setenv("PYTORCH_ENABLE_MPS_FALLBACK", "1")  # accelerate sets it when it picks MPS; undone after
    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        assert make_accelerator(tcfg(), [], str(tmp_path)).device.type == "cpu"
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def test_environment_names_testbeds_version_when_run_from_a_source_checkout(monkeypatch):
    """Run from a checkout on PYTHONPATH (no pip install), testbed has no package metadata; the generation's
    record falls back to the module's version instead of stopping the run after training."""
    import importlib.metadata as meta

    import testbed
    from testbed.device import environment

    real = meta.version

    def version(name):
        if name == "testbed":
            raise meta.PackageNotFoundError(name)
        return real(name)
    monkeypatch.setattr(meta, "version", version)
    env = environment(Accelerator(cpu=True))
    assert env["versions"]["testbed"] == testbed.__version__
    assert env["versions"]["torch"] == real("torch")
    assert env["mixed_precision"] == "fp32"  # as the config and the run's first line spell it, not accelerate's "no"


def test_fp16_on_a_cpu_is_refused_not_trained_in_fp32_under_its_name(tmp_path):
    """accelerate enables fp16 autocast only off the CPU: train.json would have recorded fp16 for an fp32 run."""
    if torch.cuda.is_available():
        pytest.skip("on a GPU fp16 runs")
    from accelerate.state import AcceleratorState

    from testbed.device import make_accelerator
    try:
        with pytest.raises(TestbedError, match=r"^train\.mixed_precision=fp16 does not run on a CPU"):
            make_accelerator(TrainConfig(mixed_precision="fp16"), [], str(tmp_path))
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
