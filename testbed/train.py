"""Training one generation: packed blocks, AdamW, warmup + cosine, accelerate.

The loop is the one in transformers' run_clm_no_trainer.py: prepare,
accumulate, clip, step. accelerate places the model, runs the precision
`testbed.device.precision()` chose (bf16 on a GPU, or on a CPU whose bf16 is
faster, else fp32) and shards batches across processes under `accelerate launch`.
"""
import math
import random
import time

import torch
from torch.utils.data import DataLoader, RandomSampler, TensorDataset
from tqdm.auto import tqdm
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from testbed import TestbedError
from testbed.config import TrainConfig

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
