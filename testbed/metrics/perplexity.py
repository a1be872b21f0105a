"""Per-document negative log-likelihood, batched on the model's device.

A document is scored as the model meets it in training and sampling:
EOS, its tokens, EOS. Every token after the first EOS is predicted once,
the closing EOS included, since ending a document is part of the model.
Documents longer than the context are cut into windows that overlap by one
token, so each target is predicted once, from at most a context of history.
"""
import math
from contextlib import nullcontext

import torch


def windows(seq: list[int], context: int) -> list[list[int]]:
    stride = context - 1
    return [seq[i: i + context] for i in range(0, max(1, len(seq) - 1), stride)]


@torch.no_grad()
def document_nll(model, docs: list[list[int]], eos_id: int, batch_size: int = 32, autocast=None) -> list[float]:
    """Sum of -log p (nats) over each document's predicted tokens (len(doc) + 1 of them)."""
    context = model.config.n_positions
    device = next(model.parameters()).device
    chunks = [(d, w) for d, doc in enumerate(docs) for w in windows([eos_id] + doc + [eos_id], context)]
    chunks.sort(key=lambda c: len(c[1]))  # similar lengths share a batch: less padding
    totals = [0.0] * len(docs)
    model.eval()
    for start in range(0, len(chunks), batch_size):
        batch = chunks[start: start + batch_size]
        width = max(len(w) for _, w in batch)
        ids = torch.full((len(batch), width), eos_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (_, w) in enumerate(batch):
            ids[i, : len(w)] = torch.tensor(w)
            mask[i, : len(w)] = 1
        ids, mask = ids.to(device), mask.to(device)
        with autocast() if autocast else nullcontext():
            logits = model(input_ids=ids, attention_mask=mask).logits
        logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        nll = -(logp * mask[:, 1:]).sum(-1)
        for (d, _), value in zip(batch, nll.tolist()):
            totals[d] += value
    return totals


def perplexity(nll: list[float], docs: list[list[int]]) -> float:
    """exp(mean nats per predicted token)."""
    return math.exp(sum(nll) / sum(len(d) + 1 for d in docs))


def bits_per_byte(nll: list[float], texts: list[str]) -> float:
    """Tokenizer-independent: nats summed, in bits, over UTF-8 bytes (+1 per document for its end)."""
    return sum(nll) / math.log(2) / sum(len(t.encode("utf-8")) + 1 for t in texts)
