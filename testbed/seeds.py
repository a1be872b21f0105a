"""Every stage's seed, from (run seed, generation, stage).

A run resumed after a kill then computes exactly what an uninterrupted run
would have, and the report can redraw the samples the metrics were taken on.
"""
import hashlib


def stage_seed(seed: int, generation: int, stage: str) -> int:
    digest = hashlib.sha256(f"{seed}:{generation}:{stage}".encode()).digest()
    return int.from_bytes(digest[:4], "little")
