"""Per-document negative log-likelihood, batched on the model's device.

A document is scored as the model meets it in training and sampling:
EOS, its tokens, EOS. Every token after the first EOS is predicted once,
the closing EOS included, since ending a document is part of the model.
A document longer than the context slides a full-width window along it with a
stride of half the context, each window scoring only the targets no earlier
window scored: every target is predicted once, with at least half a context
of history (a one-token overlap would leave the first target of each window
almost none).
"""
import math
from contextlib import nullcontext

import numpy as np
import torch

from testbed.model import context_length


def windows(seq: list[int], context: int) -> list[tuple[int, list[int], int]]:
    """(start, window, new): window is seq[start: start + len(window)]; its last `new` targets are scored."""
    if len(seq) <= context:
        return [(0, seq, max(0, len(seq) - 1))]
    stride = max(1, context // 2)
    out, scored = [], 1  # seq[0], the opening EOS, is never a target
    for start in range(0, len(seq), stride):
        end = min(start + context, len(seq))
        out.append((start, seq[start:end], end - scored))
        scored = end
        if end == len(seq):
            break
    return out


@torch.no_grad()
def token_nll(model, docs: list[list[int]], eos_id: int, batch_size: int = 32, autocast=None) -> list[np.ndarray]:
    """-log p (nats) of each document's predicted tokens: its tokens and the closing EOS, len(doc) + 1 of them."""
    context = context_length(model)
    device = next(model.parameters()).device
    chunks = [(d, begin, w, new) for d, doc in enumerate(docs)
              for begin, w, new in windows(np.concatenate(([eos_id], np.asarray(doc, np.int64), [eos_id])), context)]
    chunks.sort(key=lambda c: len(c[2]))  # similar lengths share a batch: less padding
    out = [np.zeros(len(doc) + 1, dtype=np.float64) for doc in docs]
    model.eval()
    for start in range(0, len(chunks), batch_size):
        batch = chunks[start: start + batch_size]
        width = max(len(w) for _, _, w, _ in batch)
        ids = torch.full((len(batch), width), eos_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (_, _, w, _) in enumerate(batch):
            ids[i, : len(w)] = torch.from_numpy(w)
            mask[i, : len(w)] = 1
        ids, mask = ids.to(device), mask.to(device)
        with autocast() if autocast else nullcontext():
            logits = model(input_ids=ids, attention_mask=mask).logits
        logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        nll = (-logp).cpu().numpy()
        for i, (d, begin, w, new) in enumerate(batch):
            first = len(w) - 1 - new  # a window's earlier targets are only context: an earlier window scored them
            out[d][begin + first: begin + len(w) - 1] = nll[i, first: len(w) - 1]
    return out


def document_nll(model, docs: list[list[int]], eos_id: int, batch_size: int = 32, autocast=None) -> list[float]:
    """Sum of -log p (nats) over each document's predicted tokens (len(doc) + 1 of them)."""
    return [float(t.sum()) for t in token_nll(model, docs, eos_id, batch_size, autocast)]


def perplexity(nll: list[float], docs: list[list[int]]) -> float:
    """exp(mean nats per predicted token)."""
    return math.exp(sum(nll) / sum(len(d) + 1 for d in docs))


def bits_per_byte(nll: list[float], texts: list[str]) -> float:
    """Tokenizer-independent: nats summed, in bits, over UTF-8 bytes (+1 per document for its end)."""
    return sum(nll) / math.log(2) / sum(len(t.encode("utf-8")) + 1 for t in texts)


def band_perplexity(nll: list[np.ndarray], docs: list[list[int]], eos_id: int, band_of_id: np.ndarray,
                    names=("rare", "middle", "common")) -> dict:
    """Perplexity over the predicted tokens of each band; band_of_id[i] is the index in `names` of token id i's band.

    A band with no predicted tokens gets None: there is nothing to average.
    """
    targets = np.concatenate([np.append(np.asarray(d, np.int64), eos_id) for d in docs]) if docs else np.zeros(0, np.int64)
    values = np.concatenate(nll) if nll else np.zeros(0)
    which = band_of_id[targets]
    sums = np.bincount(which, weights=values, minlength=len(names))
    counts = np.bincount(which, minlength=len(names))
    return {name: math.exp(sums[i] / counts[i]) if counts[i] else None for i, name in enumerate(names)}
