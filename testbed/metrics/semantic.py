"""Semantic diversity: how far apart documents are in meaning, not in words.

Optional: it needs a local sentence-embedding model (a path, e.g. a saved
all-MiniLM-L6-v2), loaded with transformers' AutoModel and mean-pooled over
its token states, as sentence-transformers models are pooled.
"""
import torch

from testbed import TestbedError, first_line


def load(path: str, device=None):
    from transformers import AutoModel, AutoTokenizer

    try:
        model = AutoModel.from_pretrained(path).eval()
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as e:  # transformers raises ValueError, OSError or its own for a folder that is not a model
        reason = first_line(e)
        raise TestbedError(f"eval.embedding_model={path}: not a model and tokenizer transformers can load ({reason}); "
                           "give a local sentence-embedding model saved with save_pretrained, or null to turn it off") from None
    if tokenizer.pad_token is None:  # a decoder-only model's: batches need a pad, which the mean over the mask ignores
        if (tokenizer.eos_token or tokenizer.unk_token) is None:
            raise TestbedError(f"eval.embedding_model={path}: its tokenizer has no pad, end or unknown token to pad "
                               "batches with; use a sentence-embedding model")
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer, model.to(device) if device is not None else model


@torch.no_grad()
def embed(texts: list[str], tokenizer, model, batch_size: int = 32, max_length: int = 256) -> torch.Tensor:
    """Mean of the last hidden states over each text's real tokens, one row per text: a row of zeros for a
    text with no tokens (an empty story, under a tokenizer that adds no special tokens), which has no meaning
    to compare."""
    device = next(model.parameters()).device
    rows = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start: start + batch_size], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt").to(device)
        mask = enc["attention_mask"].unsqueeze(-1).float()
        if mask.shape[1] == 0:  # every text of the batch empty: a model cannot run on zero positions
            rows.append(torch.zeros(len(mask), model.config.hidden_size))
            continue
        states = model(**enc).last_hidden_state.float()
        rows.append(((states * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu())
    return torch.cat(rows) if rows else torch.zeros(0, 0)


def mean_cosine_distance(vectors: torch.Tensor) -> float:
    """1 - the mean cosine similarity over all pairs of distinct rows, rows of zeros (texts without tokens)
    left out: a cosine with them is undefined.

    With unit rows u_i, the sum over ordered pairs i != j of u_i . u_j is
    |sum u_i|^2 - n, so the mean costs one pass instead of n^2 products.
    """
    vectors = vectors[vectors.abs().sum(-1) > 0] if len(vectors) else vectors
    n = len(vectors)
    if n < 2:
        return 0.0
    u = torch.nn.functional.normalize(vectors.double(), dim=-1)
    return float(1 - (u.sum(0).square().sum() - n) / (n * (n - 1)))
