"""Sampling a synthetic corpus: batched, with the KV cache, settings explicit.

This is a hot path, so it is a plain loop rather than `model.generate`: no
logits-processor chain per step, and rows that have ended are dropped from the
batch (and the cache) instead of being carried to the longest row's end.
Truncation is never implicit: top_k=0 and top_p=1 mean pure ancestral
sampling, unlike `generate`, which applies top_k=50 unless told otherwise.

On a GPU a tiny model is bound by kernel launches, not arithmetic, and
shrinking the batch changes every shape; there sample.static_cache keeps all
rows and a fixed-size cache to the end, so the decode step can be captured
once as a CUDA graph. Both paths draw the same random numbers for the same
rows, so they write the same corpus up to floating-point rounding.
"""
import re
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import Cache, StaticCache
from transformers.cache_utils import DynamicLayer

from testbed import TestbedError
from testbed.config import SampleConfig
from testbed.model import context_length

# Drop ended rows once this share of the batch has ended: compacting the cache
# costs a copy, so doing it every step would cost more than it saves.
_COMPACT_AT = 0.25


@dataclass
class Sample:
    prompt: list[int]  # starts with the end-of-document token
    tokens: list[int]  # generated, without the final end-of-document token
    ended: bool  # the model chose to end the document before max_new_tokens


class _ReservedLayer(DynamicLayer):
    """A DynamicLayer that writes each new token into room reserved for the whole document.

    DynamicLayer grows by torch.cat, which copies the whole cache at every token (up to half
    of sampling's time on a CPU, docs/benchmarks.md). Attention reads a view of the filled
    part: the same numbers as the concatenated cache, bit for bit (tested).
    """

    def __init__(self, room: int):
        super().__init__()
        self.room, self.filled = room, 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        batch, heads, _, dim = key_states.shape
        self._keys = key_states.new_empty(batch, heads, self.room, dim)
        self._values = value_states.new_empty(batch, heads, self.room, value_states.shape[-1])

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start, self.filled = self.filled, self.filled + key_states.shape[-2]
        self._keys[:, :, start:self.filled] = key_states
        self._values[:, :, start:self.filled] = value_states
        self.keys, self.values = self._keys[:, :, :self.filled], self._values[:, :, :self.filled]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        keys, values = self._keys, self._values
        self._keys = keys.new_empty(len(indices), *keys.shape[1:])
        self._values = values.new_empty(len(indices), *values.shape[1:])
        self._keys[:, :, :self.filled] = keys[indices, :, :self.filled]
        self._values[:, :, :self.filled] = values[indices, :, :self.filled]
        self.keys, self.values = self._keys[:, :, :self.filled], self._values[:, :, :self.filled]


def document_text(tokenizer, sample: Sample) -> str:
    """The document as the corpus keeps it: a human prompt (without the leading end token) and what the model wrote."""
    return tokenizer.decode(sample.prompt[1:] + sample.tokens)


def written_text(tokenizer, sample: Sample, text: str) -> str:
    """What the model wrote after a human prompt (sample.prompt=human), from `text`, the whole decoded document.

    Cut after the prompt's last whole word, not at its last token: a BPE prompt may end inside a word ("an ele"),
    and the model's part would then open with a fragment ("phant") that the word metrics would count as a word.
    The word the model completed is the model's.
    """
    # A BPE prompt may also end inside a character (the first byte of "ï"), which decodes alone as U+FFFD.
    head = tokenizer.decode(sample.prompt[1:]).rstrip("\ufffd")
    if not text.startswith(head):  # a decoder that joins otherwise at the seam: the continuation decoded alone
        return tokenizer.decode(sample.tokens).lstrip()
    cut = len(head)
    if cut < len(text) and text[cut].isalpha() and (inside := re.search(r"[^\W\d_]+$", head)):
        cut = inside.start()
    return text[cut:].lstrip()  # the space after the prompt is not the model's; its own text is kept to the end


def written_texts(tokenizer, samples: list[Sample], texts: list[str]) -> list[str]:
    """What the model wrote of each document: under sample.prompt=human what follows the prompt (written_text),
    else the documents themselves, the very list given (`is texts` says no document had a prompt)."""
    if not any(len(s.prompt) > 1 for s in samples):
        return texts
    return [written_text(tokenizer, s, t) for s, t in zip(samples, texts)]


def human_prompt_pool(cfg: SampleConfig, human: list) -> list:
    """The prompts sample.prompt=human draws from: the first prompt_tokens of each document long enough."""
    pool = [d[: cfg.prompt_tokens] for d in human if len(d) >= cfg.prompt_tokens]
    if not pool:
        raise TestbedError(f"sample.prompt=human: no human document has sample.prompt_tokens={cfg.prompt_tokens} tokens")
    return pool


def max_new_tokens(cfg: SampleConfig, context: int) -> int:
    prompt_len = 1 if cfg.prompt == "eos" else 1 + cfg.prompt_tokens
    room = context - prompt_len
    if room < 1 and cfg.prompt == "eos":
        raise TestbedError(f"model.context={context} leaves no room to write after the end token that opens a "
                           "document; raise model.context")
    if room < 1:
        raise TestbedError(f"sample.prompt_tokens={cfg.prompt_tokens} leaves no room in the model context of {context} "
                           "tokens; lower it, or raise model.context")
    if cfg.max_new_tokens is None:
        return room
    if cfg.max_new_tokens > room:
        raise TestbedError(
            f"sample.max_new_tokens={cfg.max_new_tokens} does not fit: the prompt takes {prompt_len} of the model's "
            f"{context} context tokens; use sample.max_new_tokens<={room} or raise model.context"
        )
    return cfg.max_new_tokens


def next_token_distribution(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Probabilities after temperature, then top-k, then top-p (the order transformers uses)."""
    logits = logits.float() / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # Keep the smallest prefix whose mass reaches top_p (always at least one token).
        drop_sorted = cumulative - sorted_logits.softmax(-1) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits.softmax(-1)


def draw(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One token per row by inverse-CDF: one uniform per row instead of one per
    vocabulary entry, about 35x faster than torch.multinomial on a CPU.

    float64 keeps tokens with probabilities near 1e-8 at their true rate: the
    tail is what collapse removes, so it must not be rounded away here.
    """
    cdf = probs.double().cumsum(-1)
    u = torch.rand(probs.shape[0], 1, generator=generator, dtype=torch.float64, device=probs.device) * cdf[:, -1:]
    # right: the first index whose cdf exceeds u, so a zero-probability token is never drawn.
    return torch.searchsorted(cdf, u, right=True).clamp_(max=probs.shape[-1] - 1).squeeze(1)


def _decode(logits: torch.Tensor, last: torch.Tensor, advance, cfg: SampleConfig, eos_id: int, max_new: int,
            generator: torch.Generator, watermark=None) -> list[list[int]]:
    """The draws of both samplers: each row's tokens, drawn from `logits` (one row per prompt) until every row
    has drawn EOS or max_new tokens. advance(rows, last, keep) gives the next logits of the rows still held,
    after `keep` (when not None) dropped the ended ones from them."""
    batch = logits.shape[0]
    # Every sampled token goes to buf; a row's document is what precedes its first EOS.
    buf = torch.full((batch, max_new), eos_id, dtype=torch.long, device=logits.device)
    rows = torch.arange(batch, device=logits.device)  # original row of each row still held
    alive = torch.ones(batch, dtype=torch.bool, device=logits.device)
    for step in range(max_new):
        if watermark is not None:
            logits = watermark(last, logits.float())
        nxt = draw(next_token_distribution(logits, cfg.temperature, cfg.top_k, cfg.top_p), generator)
        buf[rows, step] = nxt
        alive &= nxt != eos_id
        n_alive = int(alive.sum())
        if n_alive == 0 or step == max_new - 1:
            break
        keep = None
        if len(rows) - n_alive >= _COMPACT_AT * len(rows):
            keep = alive.nonzero().squeeze(1)
            rows, nxt, alive = rows[keep], nxt[keep], alive[keep]
        # Ended rows not yet dropped keep decoding; what they write lies past their EOS.
        last = nxt[:, None]
        logits = advance(rows, last, keep)
    return buf.tolist()


@torch.no_grad()
def sample_batch(model, prompts: torch.Tensor, cfg: SampleConfig, eos_id: int, max_new: int,
                 generator: torch.Generator, watermark=None) -> list[Sample]:
    """Continue each row of `prompts` (B, P) until it ends or reaches max_new tokens.

    watermark: a logits processor (GreenLists, or transformers' slower
    WatermarkLogitsProcessor) that sees the last token of each row; its
    green-list bias is added to the raw logits, before temperature and
    truncation, as in `generate`.
    """
    room = prompts.shape[1] + max_new
    cache = Cache(layers=[_ReservedLayer(room) for _ in range(model.config.num_hidden_layers)])

    def advance(rows, last, keep):
        if keep is not None:
            cache.batch_select_indices(keep)
        return model(input_ids=last, cache=cache, use_cache=True).logits[:, -1]

    logits = model(input_ids=prompts, cache=cache, use_cache=True).logits[:, -1]
    buf = _decode(logits, prompts[:, -1:], advance, cfg, eos_id, max_new, generator, watermark)
    return _documents(prompts.tolist(), buf, eos_id)


def use_static_cache(cfg: SampleConfig, device: torch.device) -> bool:
    return cfg.static_cache is True or (cfg.static_cache == "auto" and device.type == "cuda")


def _forward(model, input_ids, cache, position):
    return model(input_ids=input_ids, cache=cache, use_cache=True, cache_position=position).logits[:, -1]


_compiled_step = None


def decode_step(device: torch.device):
    """One decode step; on CUDA compiled once per process into CUDA graphs (mode reduce-overhead),
    which replay for every batch and generation as long as the shapes stay those of the first."""
    global _compiled_step
    if device.type != "cuda":
        return _forward
    if _compiled_step is None:
        _compiled_step = torch.compile(_forward, mode="reduce-overhead", fullgraph=True)
    return _compiled_step


@torch.no_grad()
def sample_batch_static(model, prompts: torch.Tensor, n: int, cfg: SampleConfig, eos_id: int, max_new: int,
                        generator: torch.Generator, cache: StaticCache, watermark=None) -> list[Sample]:
    """sample_batch with fixed shapes: the first n rows of `prompts` are sampled, the others only pad
    the batch to the size the CUDA graph was captured for.

    Every row stays in the batch and the cache to the end, but the draws are made by
    sample_batch's own loop (_decode), for the rows it would still hold, so both paths
    take the same random numbers for the same rows.
    """
    batch, prompt_len = prompts.shape
    device = prompts.device
    step_fn = decode_step(device)
    cache.reset()
    written = prompt_len  # tokens in the cache

    def advance(rows, last, keep):
        nonlocal written
        full = torch.full((batch, 1), eos_id, dtype=torch.long, device=device)
        full[rows] = last
        position = torch.full((1,), written, dtype=torch.long, device=device)
        written += 1
        # A CUDA graph writes its output into the same memory at every replay: copy out the rows held.
        return step_fn(model, full, cache, position)[rows]

    logits = _forward(model, prompts, cache, torch.arange(prompt_len, device=device))
    buf = _decode(logits[:n], prompts[:n, -1:], advance, cfg, eos_id, max_new, generator, watermark)
    return _documents(prompts[:n].tolist(), buf, eos_id)


def _documents(prompts: list[list[int]], rows: list[list[int]], eos_id: int) -> list[Sample]:
    """Each row's document: what it wrote before its first EOS, and whether it ended."""
    samples = []
    for prompt, row in zip(prompts, rows):
        end = row.index(eos_id) if eos_id in row else None
        samples.append(Sample(prompt, row[:end] if end is not None else row, end is not None))
    return samples


EMPTY_IN_A_ROW = 1024  # a model that ends 1 document in 2 at once writes this many in a row once in 2^1024 tries


def sample_corpus(model, cfg: SampleConfig, eos_id: int, seed: int, human_prompts: list | None = None,
                  autocast=None, desc: str = "sample", watermark=None, accept=None) -> list[Sample]:
    """Sample until the corpus holds cfg.size documents or tokens, or (unit=verified) documents accept(sample)
    passes, giving up after max_docs documents (default 20 x size).

    human_prompts: token ids of human documents (lists or arrays), for cfg.prompt == "human".
    watermark: a logits processor; by default the one sample.watermark turns on.
    """
    device = next(model.parameters()).device
    if watermark is None and cfg.watermark.enabled:
        from testbed.curate.watermark import GreenLists

        mark = cfg.watermark
        watermark = GreenLists(model.config.vocab_size, device, mark.gamma, mark.delta, mark.key)
    generator = torch.Generator(device=device).manual_seed(seed)
    max_new = max_new_tokens(cfg, context_length(model))
    if cfg.prompt == "human":
        pool = human_prompt_pool(cfg, human_prompts or [])
        pick = torch.Generator().manual_seed(seed)
    model.eval()
    static = use_static_cache(cfg, device)
    if static:
        # One cache for every batch: the captured graph reads and writes these tensors.
        prompt_len = 1 if cfg.prompt == "eos" else 1 + cfg.prompt_tokens
        cache = StaticCache(config=model.config, max_cache_len=prompt_len + max_new)
    if cfg.unit == "verified" and accept is None:
        raise ValueError("sample.unit=verified needs accept(sample) -> bool")
    cap = (cfg.max_docs or 20 * cfg.size) if cfg.unit == "verified" else None
    corpus: list[Sample] = []
    generated = accepted = empty = 0  # empty: documents in a row that ended at their first token
    bar = tqdm(total=cfg.size, desc=desc, unit=cfg.unit, disable=None, leave=False)
    while {"docs": len(corpus), "tokens": generated, "verified": accepted}[cfg.unit] < cfg.size:
        if cap is not None and len(corpus) >= cap:
            break
        n = {"docs": min(cfg.batch_size, cfg.size - len(corpus)), "tokens": cfg.batch_size,
             "verified": min(cfg.batch_size, (cap or 0) - len(corpus))}[cfg.unit]
        if cfg.prompt == "eos":
            prompts = torch.full((n, 1), eos_id, dtype=torch.long, device=device)
        else:
            idx = torch.randint(len(pool), (n,), generator=pick).tolist()
            prompts = torch.tensor([[eos_id, *map(int, pool[i])] for i in idx], dtype=torch.long, device=device)
        with autocast() if autocast else nullcontext():
            if static:
                # The last, short batch is padded to the full size, so the shapes never change.
                padded = torch.cat([prompts, prompts[:1].expand(cfg.batch_size - n, -1)]) if n < cfg.batch_size else prompts
                batch = sample_batch_static(model, padded, n, cfg, eos_id, max_new, generator, cache, watermark)
            else:
                batch = sample_batch(model, prompts, cfg, eos_id, max_new, generator, watermark)
        if cfg.unit == "tokens":
            # Over batches, not one: in a small batch every document may end at once by chance, in a healthy model.
            for s in batch:
                empty = 0 if s.tokens else empty + 1
            if empty >= max(EMPTY_IN_A_ROW, n):
                raise TestbedError(
                    f"sample.unit=tokens: the last {empty} documents all ended at their first token, so the corpus "
                    f"would never reach sample.size={cfg.size} tokens; the model ends every document at once "
                    "(collapsed, or truncated to EOS by top_k/temperature): use sample.unit=docs")
        for s in batch:
            if cfg.unit == "tokens" and generated >= cfg.size:
                break
            if cfg.unit == "verified" and accepted >= cfg.size:
                break  # the rest of the last batch is not needed: the corpus ends where the count is reached
            corpus.append(s)
            generated += len(s.tokens)
            ok = cfg.unit == "verified" and accept(s)
            accepted += ok
            bar.update({"docs": 1, "tokens": len(s.tokens), "verified": int(ok)}[cfg.unit])
    bar.close()
    return corpus
