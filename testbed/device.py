"""Where a run trains and in what precision: the accelerator, its processes, and the record of the machine.

Kept apart from train.py, which reads as the training loop alone: everything
here is decided once a run, and is about the machine rather than the model.
"""
import functools
import os
import time
from datetime import timedelta

import torch

from testbed import TestbedError
from testbed.config import TrainConfig

PROCESS_WAIT_HOURS = 12  # how long processes of one run wait for each other (see make_accelerator)


def make_accelerator(cfg: TrainConfig, track: list[str], project_dir: str):
    """The run's accelerator: its precision, accumulation and trackers, checked against how it was launched."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import InitProcessGroupKwargs, parse_flag_from_env

    # testbed runs on CUDA or the CPU. accelerate would take Apple's MPS device first, where the sampler's
    # float64 draws do not run and nothing is tested, so a Mac trains on its CPU. accelerate launch --cpu sets
    # ACCELERATE_USE_CPU: a machine with a GPU then trains on its CPU, in the CPU's precision.
    on_cpu = not torch.cuda.is_available() or parse_flag_from_env("ACCELERATE_USE_CPU")
    mode = precision(cfg.mixed_precision, "cpu" if on_cpu else "cuda")
    if AcceleratorState._shared_state and AcceleratorState._shared_state.get("_mixed_precision") != mode:
        # accelerate keeps one precision per process and refuses another; runs of one sweep or lab in this
        # process may differ in it (an arm at train.mixed_precision=fp32). The process group is kept.
        AcceleratorState._reset_state()
    # Under accelerate launch the other processes wait while the main one samples, scores and curates alone, which
    # on a large corpus outlasts torch's default 30 minutes (gloo; 10, NCCL) and would end the run.
    waits = InitProcessGroupKwargs(timeout=timedelta(hours=PROCESS_WAIT_HOURS))
    accelerator = Accelerator(mixed_precision=mode, gradient_accumulation_steps=cfg.grad_accum,
                              cpu=on_cpu, log_with=track or None, project_dir=project_dir, kwargs_handlers=[waits])
    if mode == "fp16" and accelerator.device.type == "cpu":
        # accelerate turns fp16 autocast on only off the CPU: the run would train in fp32 and record fp16.
        raise TestbedError("train.mixed_precision=fp16 does not run on a CPU (accelerate trains in fp32 there); "
                           "use bf16, fp32 or auto")
    if int(os.environ.get("WORLD_SIZE", "1")) > accelerator.num_processes:
        # Each process would think itself alone and make the same run directory.
        raise TestbedError(f"launched as {os.environ['WORLD_SIZE']} processes but accelerate sees "
                           f"{accelerator.num_processes}; start them with accelerate launch --multi_gpu "
                           "(ACCELERATE_USE_CPU=1 in front to keep them on the CPU)")
    return accelerator


def on_main(accelerator, work):
    """work() on the main process alone; its result, or the line of its TestbedError, reaches every process, which
    raises it too: the others would otherwise wait at the next collective for a process that has stopped."""
    from accelerate.utils import broadcast_object_list

    outcome = [None, None]
    if accelerator.is_main_process:
        try:
            outcome = [work(), None]
        except TestbedError as e:
            outcome = [None, str(e)]
    result, refusal = broadcast_object_list(outcome)
    if refusal is not None:
        raise TestbedError(refusal)
    return result


def precision(mode: str, device: str | None = None) -> str:
    """accelerate's name for the configured precision, on device ("cuda" or "cpu"; None: CUDA where there is one)."""
    if mode == "auto":
        if device == "cuda" or (device is None and torch.cuda.is_available()):
            # torch counts a GPU that only emulates bf16 (V100, T4) as supporting it; emulated, it is slower than fp32.
            return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "no"
        # Where bf16 multiplies faster, a CPU trains 1.3-1.5x faster in it, within seed-to-seed noise of fp32
        # (docs/benchmarks.md); elsewhere it is slower than fp32.
        return "bf16" if fast_cpu_bf16() else "no"
    return "no" if mode == "fp32" else mode


@functools.cache
def fast_cpu_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices faster than fp32 ones. The flags torch reads (AVX512-BF16, AMX)
    are not enough: an Intel Xeon VM that reports AVX512-BF16 without AMX multiplied bf16 at half fp32's speed
    and trained 1.7x slower in it (docs/benchmarks.md). So a flagged CPU is timed, once a process (about 25 ms);
    an unflagged one would only emulate bf16. (torch's private probes: a torch without them answers fp32.)"""
    probes = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    if not any(probe() for probe in probes if probe is not None):
        return False
    # bf16 must win clearly: AMD's AVX512-BF16 trained 1.36x faster, the Xeon's 0.58x; a near tie stays in fp32.
    bf16, fp32 = matmul_seconds((torch.bfloat16, torch.float32))
    return bf16 * 1.1 < fp32


def matmul_seconds(dtypes: tuple, size: int = 512, repeats: int = 20) -> list[float]:
    """For each dtype, the fastest of a few size x size matrix products, taken in turn and spread over about a
    tenth of a second: on a loaded 2-core CPU a product on two threads stalls while one of them waits for a core
    (the Xeon's fp32, 0.9 ms, timed 8 ms through 5 products in a row in 2 of 6 processes, which then trained in
    bf16, 1.7x slower), and a later turn finds the core free. Timed on the process's own threads: setting them, even
    to their number, changes the rounding of every later fp32 training step on that CPU (torch 2.13), so a run
    would not repeat the figures of a run made before."""
    # Its own generator: drawing from torch's would move every seeded draw after it, on flagged CPUs only.
    draws = torch.Generator().manual_seed(0)
    pairs = [[torch.randn(size, size, generator=draws).to(dtype) for _ in range(2)] for dtype in dtypes]
    for a, b in pairs:
        a @ b  # the first call picks and prepares the kernel
    best = [float("inf")] * len(pairs)
    for _ in range(repeats):
        for i, (a, b) in enumerate(pairs):
            start = time.perf_counter()
            a @ b
            best[i] = min(best[i], time.perf_counter() - start)
        time.sleep(0.005)
    return best


def inference_autocast(accelerator):
    """The autocast for sampling and scoring: the training precision on a GPU, fp32 on a CPU, where bf16
    sampled no faster and would round every metric."""
    return accelerator.autocast if accelerator.device.type == "cuda" else None


def environment(accelerator) -> dict:
    """Where and with what a generation was made: a resumed run may finish on another machine or stack."""
    import platform
    from datetime import datetime, timezone

    device = accelerator.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU, {torch.get_num_threads()} thread{'s' * (torch.get_num_threads() != 1)}"
    return {"finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": f"{device.type}: {name}",
            "processes": accelerator.num_processes, "mixed_precision": precision_name(accelerator.mixed_precision),
            "versions": {"python": platform.python_version(),
                         **{p: _version(p) for p in ("testbed", "torch", "transformers", "accelerate", "datasets", "tokenizers")}}}


def _version(package: str) -> str:
    """The module's own version, which names torch's build (2.13.0+cpu, 2.14.1+cu130) where the installed
    package's metadata says 2.14.1 for both; else the metadata's."""
    import importlib
    import importlib.metadata as meta

    version = getattr(importlib.import_module(package), "__version__", None)
    try:
        return version or meta.version(package)
    except meta.PackageNotFoundError:
        return "unknown"


def precision_name(mode: str) -> str:
    """fp32 as the config spells it, not accelerate's "no" (which runs before 2026-11-29 recorded in train.json)."""
    return "fp32" if mode == "no" else mode


def hardware(accelerator, train_cfg: TrainConfig) -> str:
    """Where it trains and in what precision: the times the README and the labs state were measured in bf16 on
    a CPU where it is faster, and elsewhere a run takes longer (docs/benchmarks.md)."""
    env = environment(accelerator)
    trains, device = env["mixed_precision"], env["device"]
    lacking = train_cfg.mixed_precision == "auto" and trains == "fp32"
    chip = "GPU" if accelerator.device.type == "cuda" else accelerator.device.type.upper()
    processes = f", {accelerator.num_processes} processes" if accelerator.num_processes > 1 else ""
    return f"{device}{processes}, training in {trains}" + (f" (bf16 would be slower on this {chip})" if lacking else "")
