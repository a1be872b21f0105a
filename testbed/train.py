"""Training one generation: packed blocks, AdamW, warmup + cosine, accelerate.

The loop is the one in transformers' run_clm_no_trainer.py: prepare,
accumulate, clip, step. accelerate places the model, runs the precision
`precision()` chose (bf16 on a GPU, or on a CPU whose bf16 is faster, else
fp32) and shards batches across processes under `accelerate launch`.
"""
import functools
import math
import random
import time
from datetime import timedelta

import torch
from torch.utils.data import DataLoader, RandomSampler, TensorDataset
from tqdm.auto import tqdm
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from testbed import TestbedError
from testbed.config import TrainConfig

PROCESS_WAIT_HOURS = 12  # how long processes of one run wait for each other (see make_accelerator)


def pack(docs: list, eos_id: int, block: int, seed: int) -> torch.Tensor:
    """Documents in a seeded order, each preceded by EOS, cut into (N, block) rows.

    The leading EOS is what the sampler prompts with, so a model learns how
    documents start; the tail that does not fill a block is dropped. Each
    document is copied once, straight into its place: a corpus of millions of
    documents is never a list of ids too. The rows are int32, half of int64's
    memory; train() widens each batch for the model.
    """
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    tokens = sum(len(d) + 1 for d in docs)
    n_blocks = tokens // block
    if n_blocks == 0:
        raise TestbedError(
            f"the training set has {tokens} tokens, fewer than one block of model.context={block}; "
            "add documents or lower model.context"
        )
    blocks = torch.empty(n_blocks * block, dtype=torch.int32)
    out, at = blocks.numpy(), 0
    for i in order:
        if at == len(out):
            break
        out[at] = eos_id
        doc = docs[i][: len(out) - at - 1]
        out[at + 1: at + 1 + len(doc)] = doc
        at += 1 + len(doc)
    return blocks.view(n_blocks, block)


def train(model, blocks: torch.Tensor, cfg: TrainConfig, accelerator, seed: int, log=None, desc: str = "train") -> dict:
    """Train in place for the budget cfg.compute names: cfg.tokens tokens whatever the set holds (several
    passes over a small set, part of one over a large one), or cfg.epochs passes over the blocks."""
    block = blocks.shape[1]
    per_step = cfg.batch_size * cfg.grad_accum * block * accelerator.num_processes
    steps = max(1, math.ceil(budget_tokens(cfg, blocks.numel()) / per_step))
    sampler = RandomSampler(
        blocks, num_samples=steps * cfg.batch_size * cfg.grad_accum * accelerator.num_processes,
        generator=torch.Generator().manual_seed(seed),
    )
    loader = DataLoader(TensorDataset(blocks), batch_size=cfg.batch_size, sampler=sampler)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    # foreach computes what torch's per-tensor loop (its CPU default) computes, bit for bit, in fewer
    # kernel calls; fused is one kernel per step, faster again, with different rounding in the last bits.
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95), **{cfg.adamw: True},
    )
    # accelerate steps a prepared scheduler once per process, hence the factor.
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer,
        num_warmup_steps=int(cfg.warmup * steps) * accelerator.num_processes,
        num_training_steps=steps * accelerator.num_processes,
        min_lr_rate=cfg.min_lr_ratio,
    )
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    model.train()
    # CUDA graphs for one process only: several (DDP) all-reduce inside the backward, untested under graphs.
    graphs = accelerator.device.type == "cuda" and accelerator.num_processes == 1
    loss_of = compiled_loss(graphs) if cfg.compile else model_loss
    start = time.perf_counter()
    bar = tqdm(total=steps, desc=desc, unit="step", disable=None if accelerator.is_main_process else True, leave=False)
    step, ema, pending, lrs, micro = 0, None, [], [], []
    for (x,) in loader:
        x = x.long()  # the model's loss takes int64 labels
        with accelerator.accumulate(model):
            loss = loss_of(model, x)
            accelerator.backward(loss)
            # A copy: under CUDA graphs (compile mode reduce-overhead) the next step overwrites the loss in place.
            micro.append(loss.detach().clone())
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), 1.0)
                lr = optimizer.param_groups[0]["lr"]  # what this step trains with: the scheduler moves it after
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        if accelerator.sync_gradients:
            step += 1
            # The step's loss is the mean over its train.grad_accum micro-batches, not the last one alone.
            step_loss = micro[0] if len(micro) == 1 else torch.stack(micro).mean()
            pending.append(step_loss)
            micro = []
            lrs.append(lr)
            # Reading a loss makes the CPU wait for the GPU: do it every 10 steps, not every step. Under accelerate
            # launch each process holds the loss of its share of the batch: the step's is their mean.
            if step % 10 == 0 or step == steps:
                first = step - len(pending) + 1
                losses = accelerator.reduce(torch.stack(pending), "mean").tolist()
                for i, value in enumerate(losses):
                    if not math.isfinite(value):
                        raise TestbedError(
                            f"{desc}: the loss became {value} at step {first + i} of {steps}: training diverged; "
                            f"lower train.lr (now {cfg.lr:g}) or raise train.warmup (now {cfg.warmup:g})")
                    ema = value if ema is None else 0.95 * ema + 0.05 * value
                    # To the trackers the loop opened for this generation, on the main process; without `track`, to none.
                    accelerator.log({"train/loss": value, "train/lr": lrs[i]}, step=first + i)
                if log is not None and (step % 50 == 0 or step == steps):
                    log(f"step {step}/{steps} loss {losses[-1]:.4f} lr {lr:.2e}")
                pending, lrs = [], []
                bar.set_postfix(loss=f"{ema:.3f}")
            bar.update(1)
    bar.close()
    seconds = time.perf_counter() - start
    tokens = steps * per_step
    accelerator.wait_for_everyone()
    # Without the wrapper prepare() put on forward: the caller decides how the trained model samples and scores.
    model = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    accelerator.free_memory()
    return {"model": model, "steps": steps, "tokens": tokens, "passes": tokens / blocks.numel(), "seconds": seconds,
            "tokens_per_s": tokens / seconds, "final_loss": ema}


def model_loss(model, x: torch.Tensor) -> torch.Tensor:
    return model(input_ids=x, labels=x).loss


_compiled = {}


def compiled_loss(graphs: bool = False):
    """model_loss under torch.compile, one per process (and per `graphs`): every generation's model has the
    same shapes, so only the first generation pays for compiling and later ones reuse its graphs.
    The model itself stays uncompiled, for the sampler's changing shapes. graphs: also capture the
    forward and backward as CUDA graphs (mode reduce-overhead): a small model's step on a GPU is bound
    by kernel launches, and replaying a graph launches them all at once."""
    if graphs not in _compiled:
        _compiled[graphs] = torch.compile(model_loss, mode="reduce-overhead" if graphs else None)
    return _compiled[graphs]


def budget_tokens(cfg: TrainConfig, set_tokens: int) -> float:
    """Tokens to train on, before rounding up to whole optimizer steps."""
    return cfg.tokens if cfg.compute == "tokens" else cfg.epochs * set_tokens


def make_accelerator(cfg: TrainConfig, track: list[str], project_dir: str):
    """The run's accelerator: its precision, accumulation and trackers, checked against how it was launched."""
    import os

    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from accelerate.utils import InitProcessGroupKwargs, parse_flag_from_env

    # accelerate launch --cpu sets ACCELERATE_USE_CPU: a machine with a GPU then trains on its CPU, in the CPU's precision.
    on_cpu = not torch.cuda.is_available() or parse_flag_from_env("ACCELERATE_USE_CPU")
    mode = precision(cfg.mixed_precision, "cpu" if on_cpu else "cuda")
    if AcceleratorState._shared_state and AcceleratorState._shared_state.get("_mixed_precision") != mode:
        # accelerate keeps one precision per process and refuses another; runs of one sweep or lab in this
        # process may differ in it (an arm at train.mixed_precision=fp32). The process group is kept.
        AcceleratorState._reset_state()
    # testbed runs on CUDA or the CPU. accelerate would take Apple's MPS device first, where the sampler's
    # float64 draws do not run and nothing is tested, so a Mac trains on its CPU.
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
    return matmul_seconds(torch.bfloat16) * 1.1 < matmul_seconds(torch.float32)


def matmul_seconds(dtype, size: int = 512, repeats: int = 5) -> float:
    """The fastest of a few size x size matrix products in dtype, on the CPU's current threads: the least
    disturbed by other work on a shared machine."""
    # Its own generator: drawing from torch's would move every seeded draw after it, on flagged CPUs only.
    draws = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=draws).to(dtype) for _ in range(2))
    a @ b  # the first call picks and prepares the kernel
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
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
            "processes": accelerator.num_processes, "mixed_precision": accelerator.mixed_precision,
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
