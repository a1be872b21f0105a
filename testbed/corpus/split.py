"""A deterministic train / held-out split, saved with the run."""
import hashlib
import random

from testbed import TestbedError


def split_documents(docs: list[str], heldout: int, seed: int, source: str) -> dict:
    """Indices of held-out and training documents, plus a checksum of the corpus they index."""
    if heldout >= len(docs):
        raise TestbedError(
            f"data.heldout_docs={heldout} leaves no training documents: the corpus has {len(docs)}; "
            "lower data.heldout_docs or use a larger corpus")
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    return {"source": source, "documents": len(docs), "sha256": checksum(docs),
            "heldout": sorted(order[:heldout]), "train": sorted(order[heldout:])}


def checksum(docs: list[str]) -> str:
    """The corpus's identity: a changed document means a different experiment."""
    digest = hashlib.sha256()
    for d in docs:
        digest.update(d.encode("utf-8") + b"\0")
    return digest.hexdigest()
