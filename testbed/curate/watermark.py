"""The green-list watermark (Kirchenbauer et al., 2023), as transformers implements it.

While sampling, the previous token seeds a split of the vocabulary into a
green share gamma and a red rest, and delta is added to the green logits, so
watermarked text holds more green tokens than chance. Detection needs no
model: count green tokens and report the z-score against the share gamma
that unwatermarked text would have. Curation drops the documents whose
z-score passes a threshold, which removes the sampler's own text from a pool
it may have leaked into.

Sampler and detector use only transformers' public WatermarkLogitsProcessor,
called as any logits processor is: the green list of a previous token is
where the processor adds its bias. The z-score is WatermarkDetector's
(lefthash, context 1), which the tests check this against.

The green lists come from torch's generator on the given device, and CPU and
CUDA generators permute differently: detect on the device type that sampled.
"""
import math
from dataclasses import dataclass

import numpy as np

from testbed import TestbedError
from testbed.curate.step import Step

KEY = 15485863  # transformers' default hashing key


@dataclass
class WatermarkFilterConfig:
    enabled: bool = False  # drop documents whose watermark z-score exceeds z_threshold (needs sample.watermark)
    z_threshold: float = 4.0

    def validate(self, cfg) -> None:
        if self.enabled and not cfg.sample.watermark.enabled:
            raise TestbedError("curate.watermark.enabled=true detects a watermark nobody wrote: "
                               "set sample.watermark.enabled=true")


def make_processor(vocab_size: int, device, gamma: float = 0.25, delta: float = 2.0, key: int = KEY):
    """The logits processor to hand to sample_corpus(watermark=...): processor(last_tokens (B, 1), logits (B, V))."""
    from transformers import WatermarkLogitsProcessor
    return WatermarkLogitsProcessor(vocab_size, device, greenlist_ratio=gamma, bias=delta, hashing_key=key,
                                    seeding_scheme="lefthash", context_width=1)


def green_lists(previous: list[int], vocab_size: int, gamma: float = 0.25, key: int = KEY, device="cpu",
                chunk: int = 512):
    """(len(previous), vocab_size) bool on the CPU: row i marks the tokens green after token previous[i]."""
    import torch
    processor = make_processor(vocab_size, device, gamma, delta=1.0, key=key)  # any positive bias marks the same tokens
    rows = []
    for start in range(0, len(previous), chunk):
        last = torch.tensor(previous[start: start + chunk], dtype=torch.long, device=device)[:, None]
        rows.append((processor(last, torch.zeros(len(last), vocab_size, device=device)) > 0).cpu())
    return torch.cat(rows) if rows else torch.zeros(0, vocab_size, dtype=torch.bool)


def watermark_z(docs: list[list[int]], vocab_size: int, eos_id: int, gamma: float = 0.25, key: int = KEY,
                device="cpu") -> list[float]:
    """z-score of each document's green-token count, scored as sampled: every token after the one before it,
    the first after the EOS prompt.

    Documents of fewer than 2 tokens get 0.0: one token is no evidence either way.
    """
    import torch
    previous = sorted({t for doc in docs if len(doc) >= 2 for t in [eos_id, *np.asarray(doc[:-1]).tolist()]})
    green = green_lists(previous, vocab_size, gamma, key, device)
    row = torch.full((max(previous, default=0) + 1,), -1, dtype=torch.long)
    row[previous] = torch.arange(len(previous))
    z = []
    for doc in docs:
        if len(doc) < 2:
            z.append(0.0)
            continue
        n = len(doc)
        ids = torch.from_numpy(np.asarray(doc, np.int64))  # a list, or a view of a corpus's ids
        hits = int(green[row[torch.cat([torch.tensor([eos_id]), ids[:-1]])], ids].sum())
        # WatermarkDetector's arithmetic, in its order, so the figures are its figures to the bit.
        z.append((hits - gamma * n) / math.sqrt(n * gamma * (1 - gamma)))
    return z


def watermark_keep(z: list[float], z_threshold: float) -> list[bool]:
    """Keep what the detector does not flag (z <= threshold)."""
    return [value <= z_threshold for value in z]


class Watermark(Step):
    name = section = "watermark"
    Config = WatermarkFilterConfig

    def keep(self, g, pool, newest):
        w, cur = self.curator.cfg.sample.watermark, self.curator
        z = watermark_z([d.ids for _, d in pool], cur.vocab_size, cur.eos, gamma=w.gamma, key=w.key,
                        device=cur.device)  # green lists differ between CPU and CUDA generators
        keep = watermark_keep(z, self.c.z_threshold)
        return keep, cur.detection(pool, keep, z)
