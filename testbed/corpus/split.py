"""A deterministic train / held-out split, saved with the run."""
import hashlib
import random

from testbed import TestbedError


def split_documents(docs: list[str], heldout: int, seed: int, source: str, fresh: int = 0,
                    max_docs: int | None = None) -> dict:
    """Indices of held-out, fresh and training documents, plus a checksum of the corpus they index.

    Fresh documents are a reserve that neither generation 0 nor the evaluation
    sees: the human text that mix.anchor_set=fresh adds to later generations.

    Exact duplicates (the same text once stripped) are left out, the first
    occurrence kept: a held-out text also trained on would flatter held-out scores.
    """
    seen, order = set(), []
    for i, d in enumerate(docs):
        if d.strip() not in seen:
            seen.add(d.strip())
            order.append(i)
    duplicates = len(docs) - len(order)
    if heldout + fresh >= len(order):
        removed = f" once {duplicates} exact duplicates are removed" if duplicates else ""
        reserved = f" + data.fresh_docs={fresh}" if fresh else ""
        capped = max_docs is not None and len(docs) >= max_docs
        raise TestbedError(
            f"data.heldout_docs={heldout}{reserved} leaves no training documents: the corpus has {len(order)}{removed}"
            f"{f' (the first data.max_docs={max_docs})' if capped else ''}; lower data.heldout_docs"
            f"{' or data.fresh_docs' if fresh else ''}, or {'raise data.max_docs' if capped else 'use a larger corpus'}")
    random.Random(seed).shuffle(order)
    return {"source": source, "documents": len(docs), "duplicates": duplicates, "sha256": checksum(docs),
            "heldout": sorted(order[:heldout]), "fresh": order[heldout:heldout + fresh],
            "train": sorted(order[heldout + fresh:])}


def checksum(docs: list[str]) -> str:
    """The corpus's identity: a changed document means a different experiment."""
    digest = hashlib.sha256()
    for d in docs:
        digest.update(d.encode("utf-8") + b"\0")
    return digest.hexdigest()
