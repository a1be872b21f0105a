import math
import random

import pytest
import torch
from accelerate import Accelerator

from testbed import TestbedError
from testbed.config import TrainConfig
from testbed.train import pack, train

from conftest import DEVICES

EOS = 0


def split_on_eos(row):
    docs, cur = [], None
    for t in row:
        if t == EOS:
            if cur is not None:
                docs.append(cur)
            cur = []
        else:
            cur.append(t)
    docs.append(cur)
    return docs


def test_pack_documents_preceded_by_eos_in_seeded_order():
    docs = [[1, 2], [3], [4, 5, 6]]  # 3 + 2 + 4 = 9 tokens with their EOS
    blocks = pack(docs, EOS, 3, seed=5)
    assert blocks.shape == (3, 3) and blocks.dtype == torch.int32
    order = [0, 1, 2]
    random.Random(5).shuffle(order)
    assert blocks.flatten().tolist() == [t for i in order for t in [EOS] + docs[i]]


def test_pack_drops_the_tail_that_does_not_fill_a_block():
    docs = [[1, 2], [3], [4, 5, 6]]
    blocks = pack(docs, EOS, 4, seed=0)
    assert blocks.shape == (2, 4)  # 9 // 4 blocks; the 9th token is dropped
    assert blocks[0, 0] == EOS


def test_pack_keeps_every_document_whole():
    docs = [[i % 7 + 1] * (1 + i % 5) + [i + 10] for i in range(40)]
    stream = pack(docs, EOS, 1, seed=1).flatten().tolist()
    assert stream[0] == EOS
    assert sorted(split_on_eos(stream)) == sorted(docs)


def test_pack_order_depends_on_the_seed_only():
    docs = [[i + 1] for i in range(30)]
    assert torch.equal(pack(docs, EOS, 4, seed=1), pack(docs, EOS, 4, seed=1))
    assert not torch.equal(pack(docs, EOS, 4, seed=1), pack(docs, EOS, 4, seed=2))


def reference_pack(docs, eos_id, block, seed):
    """pack as it was written before it copied each document into place: one list of the whole stream."""
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    stream = []
    for i in order:
        stream.append(eos_id)
        stream.extend(docs[i])
    n_blocks = len(stream) // block
    return torch.tensor(stream[: n_blocks * block], dtype=torch.long).view(n_blocks, block)


@pytest.mark.parametrize("block", [1, 7, 64, 300])
def test_pack_equals_the_stream_cut_into_blocks(block, as_ids):
    rng = random.Random(block)
    lists = [[rng.randrange(1, 60_000) for _ in range(rng.choice([0, 1, 2, 9, 40, 180]))] for _ in range(200)]
    ids = as_ids(lists)
    expected = reference_pack(lists, 65_535, block, seed=3)
    for docs in (lists, ids):  # lists, and views into one flat uint16 array as encode() returns them
        blocks = pack(docs, 65_535, block, seed=3)
        assert blocks.shape == expected.shape and torch.equal(blocks.long(), expected)


def test_pack_fewer_tokens_than_one_block():
    with pytest.raises(TestbedError, match=r"3 tokens.*model\.context=4"):
        pack([[1, 2]], EOS, 4, seed=0)
    with pytest.raises(TestbedError):
        pack([], EOS, 4, seed=0)


# --- train -------------------------------------------------------------------

SENTENCE = [5, 9, 12, 7, 30, 22, 9, 41, 3, 17]


def repetitive_blocks():
    return pack([SENTENCE] * 60, EOS, 32, seed=0)  # 660 tokens -> 20 blocks of 32


def mean_loss(model, blocks):
    model.eval()
    with torch.no_grad():
        return model(input_ids=blocks.long(), labels=blocks.long()).loss.item()


def tcfg(**kw):
    kw.setdefault("batch_size", 4)
    kw.setdefault("mixed_precision", "fp32")
    return TrainConfig(**kw)


def test_train_reduces_loss_on_a_repetitive_corpus(make_model):
    model, blocks = make_model(), repetitive_blocks()
    before = mean_loss(model, blocks)  # ~ln 64 = 4.16 for a fresh model
    result = train(model, blocks, tcfg(tokens=40 * 4 * 32, lr=1e-2), Accelerator(cpu=True), seed=0)
    after = mean_loss(result["model"], blocks)
    assert before > 3.5
    assert after < 0.5, (before, after)  # the stream repeats every 11 tokens: fully predictable
    assert result["steps"] == 40 and result["final_loss"] < before  # an EMA, so it lags


@pytest.mark.parametrize("device", DEVICES)
def test_train_in_bf16_reduces_loss_and_returns_a_plain_fp32_model(make_model, device):
    """bf16 training as `auto` does it on a GPU (and on a CPU with native bf16): the model learns, and what
    comes back has fp32 weights on the device and no autocast wrapper, so the caller decides how it samples."""
    model, blocks = make_model(), repetitive_blocks()
    result = train(model, blocks, tcfg(tokens=40 * 4 * 32, lr=1e-2, mixed_precision="bf16"),
                   Accelerator(cpu=device == "cpu", mixed_precision="bf16"), seed=0)
    trained = result["model"]
    assert next(trained.parameters()).device.type == device
    assert all(p.dtype == torch.float32 for p in trained.parameters())
    assert not hasattr(trained.forward, "__wrapped__")
    assert mean_loss(trained, blocks.to(device)) < 0.5


def count_tokens(model):
    seen = []
    model.transformer.wte.register_forward_hook(lambda m, args, out: seen.append(args[0].numel()))
    return seen


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_train_processes_the_token_budget(make_model, grad_accum):
    model, blocks = make_model(), repetitive_blocks()
    seen = count_tokens(model)
    lines = []
    cfg = tcfg(tokens=1000, grad_accum=grad_accum, lr=1e-3, min_lr_ratio=0.1)
    result = train(model, blocks, cfg, Accelerator(cpu=True, gradient_accumulation_steps=grad_accum), seed=0,
                   log=lines.append)
    per_step = 4 * grad_accum * 32
    assert result["steps"] == math.ceil(1000 / per_step)  # 8 steps of 128 tokens, or 4 of 256
    assert sum(seen) == result["tokens"] == result["steps"] * per_step >= 1000
    # The log names the rate each step trained with (warmup, then the cosine towards lr * min_lr_ratio): the
    # last step's is the cosine one step before its bottom, not the bottom the scheduler moves to after it.
    steps = result["steps"]
    assert lines[-1].startswith(f"step {steps}/{steps} ")
    warmup = int(cfg.warmup * steps)
    progress = (steps - 1 - warmup) / (steps - warmup)
    used = 1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
    assert lines[-1].endswith(f"lr {used:.2e}") and used > 1e-4 * 1.01


def test_the_loss_a_step_logs_is_the_mean_of_its_micro_batches(make_model, monkeypatch):
    """With train.grad_accum=2 the logged loss (trackers, the divergence check, final_loss) was the second
    micro-batch's alone: half the step's data."""
    import testbed.train

    micro, logged = [], []
    real = testbed.train.model_loss
    monkeypatch.setattr(testbed.train, "model_loss", lambda model, x: micro.append(real(model, x)) or micro[-1])
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    monkeypatch.setattr(accelerator, "log", lambda values, step: logged.append(values["train/loss"]))
    train(make_model(), repetitive_blocks(), tcfg(tokens=4 * 2 * 32 * 5, grad_accum=2), accelerator, seed=0)
    pairs = [(a.item(), b.item()) for a, b in zip(micro[::2], micro[1::2])]
    assert len(logged) == len(pairs) == 5 and all(a != b for a, b in pairs)
    assert logged == pytest.approx([(a + b) / 2 for a, b in pairs], rel=1e-6)


def test_train_same_seed_same_weights(make_model):
    def trained(order_seed):
        model = make_model(seed=0)
        return train(model, repetitive_blocks(), tcfg(tokens=6 * 4 * 32), Accelerator(cpu=True), seed=order_seed)["model"]

    a, b, c = trained(1), trained(1), trained(2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)  # the order seed matters


def rows_seen(model):
    """Every input row the model is trained on, as a tuple."""
    seen = []
    model.transformer.wte.register_forward_hook(lambda m, args, out: seen.extend(map(tuple, args[0].tolist())))
    return seen


def test_epochs_policy_sees_every_block_of_a_pool_the_token_policy_only_samples(make_model):
    """compute=epochs is accumulate as Gerstgrasser et al. ran it (all data); compute=tokens with a budget
    below the pool is the accumulate-subsample of Kazdan et al. (part of it)."""
    blocks = torch.randint(1, 64, (40, 32), generator=torch.Generator().manual_seed(0))
    everything = set(map(tuple, blocks.tolist()))
    model = make_model()
    seen = rows_seen(model)
    result = train(model, blocks, tcfg(compute="epochs", epochs=1.0), Accelerator(cpu=True), seed=0)
    assert set(seen) == everything and result["passes"] == pytest.approx(1.0)
    model = make_model()
    seen = rows_seen(model)
    result = train(model, blocks, tcfg(tokens=10 * 32), Accelerator(cpu=True), seed=0)
    assert len(set(seen)) < len(everything) and result["passes"] == pytest.approx(12 / 40)  # 3 steps of 4 blocks
    model = make_model()
    result = train(model, blocks, tcfg(compute="epochs", epochs=2.5), Accelerator(cpu=True), seed=0)
    assert result["steps"] == 25 and result["passes"] == pytest.approx(2.5)


def test_a_diverging_loss_stops_training_with_the_step_and_a_hint(make_model):
    blocks = torch.randint(1, 64, (40, 32), generator=torch.Generator().manual_seed(0))
    with pytest.raises(TestbedError, match=r"gen 2/3 train: the loss became (nan|inf) at step \d+ of 20: training "
                                           r"diverged; lower train.lr \(now 1e\+30\)"):
        train(make_model(), blocks, tcfg(tokens=20 * 4 * 32, lr=1e30, warmup=0.0), Accelerator(cpu=True), seed=0,
              desc="gen 2/3 train")


# --- speed options: train.adamw, train.compile ------------------------------------

def trained_weights(make_model, **kw):
    model = make_model(seed=0)
    result = train(model, repetitive_blocks(), tcfg(tokens=6 * 4 * 32, **kw), Accelerator(cpu=True), seed=1)
    return result["model"].state_dict()


def test_foreach_adamw_is_torchs_per_tensor_loop_bit_for_bit(make_model, monkeypatch):
    """The default must leave results as they were with torch's CPU default, the per-tensor loop."""
    fast = trained_weights(make_model)
    adamw = torch.optim.AdamW

    def loop_adamw(*args, foreach=None, **kw):
        assert foreach is True  # what train.adamw=foreach asks for
        return adamw(*args, foreach=False, **kw)
    monkeypatch.setattr(torch.optim, "AdamW", loop_adamw)
    slow = trained_weights(make_model)
    assert all(torch.equal(fast[k], slow[k]) for k in fast)


def test_fused_adamw_trains_to_the_same_weights_up_to_rounding(make_model):
    foreach, fused = trained_weights(make_model), trained_weights(make_model, adamw="fused")
    assert all(torch.allclose(foreach[k], fused[k], atol=1e-4) for k in foreach)
    assert not all(torch.equal(foreach[k], fused[k]) for k in foreach)  # it is a different kernel


@pytest.mark.slow  # compiling takes 30 s to minutes on a shared 2-core machine
def test_compiled_training_matches_eager_and_compiles_once(make_model):
    import testbed.train as train_mod

    eager = trained_weights(make_model)
    compiled = trained_weights(make_model, compile=True)
    assert all(torch.allclose(eager[k], compiled[k], atol=1e-4) for k in eager)
    first = train_mod.compiled_loss()
    later = trained_weights(make_model, compile=True)  # a later generation: a new model, the same compiled step
    assert train_mod.compiled_loss() is first
    # The graph is reused with the new model's own weights, not the first's.
    assert all(torch.allclose(eager[k], later[k], atol=1e-4) for k in eager)


def test_compiled_step_takes_cuda_graphs_only_when_asked_and_compiles_once_each(monkeypatch):
    import testbed.train as train_mod

    made = []
    monkeypatch.setattr(train_mod, "_compiled", {})
    monkeypatch.setattr(train_mod.torch, "compile", lambda fn, **kw: made.append(kw) or (fn, kw))
    assert train_mod.compiled_loss(graphs=True) == (train_mod.model_loss, {"mode": "reduce-overhead"})
    assert train_mod.compiled_loss() == (train_mod.model_loss, {"mode": None})
    train_mod.compiled_loss(graphs=True), train_mod.compiled_loss()  # later generations
    assert len(made) == 2
