"""The green-list watermark (Kirchenbauer et al., 2023), as transformers implements it.

While sampling, the previous token seeds a split of the vocabulary into a
green share gamma and a red rest, and delta is added to the green logits, so
watermarked text holds more green tokens than chance. Detection needs no
model: count green tokens and report the z-score against the share gamma
that unwatermarked text would have. Curation drops the documents whose
z-score passes a threshold, which removes the sampler's own text from a pool
it may have leaked into.

Sampler and detector take their green lists from transformers' public
WatermarkLogitsProcessor, called as any logits processor is: the green list
of a previous token is where the processor adds its bias. GreenLists asks it
once per token and keeps the answer. The z-score is WatermarkDetector's
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


class GreenLists:
    """Each previous token's green list, asked of transformers' processor once and kept in a table.

    The processor draws a permutation of the whole vocabulary for every row at every step, in a Python
    loop, and one of a million entries each time it is built: the quickstart's model sampled at 0.58-0.62x
    its unwatermarked speed with it. A token's green list never changes, so the table gives the
    processor's logits bit for bit (tested) for one vocabulary-long row of bools per distinct previous
    token. Called as a logits processor, green(last_tokens (B, >=1), logits (B, V)), it adds delta.
    """

    def __init__(self, vocab_size: int, device, gamma: float = 0.25, delta: float = 2.0, key: int = KEY):
        import torch
        self.processor = make_processor(vocab_size, device, gamma, delta=1.0, key=key)  # any positive bias marks them
        self.vocab_size, self.device, self.delta = vocab_size, device, delta
        self.slot = torch.full((vocab_size,), -1, dtype=torch.long, device=device)  # a token's row in the table
        self.table = torch.zeros((0, vocab_size), dtype=torch.bool, device=device)
        self.rows = 0

    def of(self, previous):
        """(len(previous), vocab_size) bool: row i marks the tokens green after token previous[i]."""
        import torch
        new = torch.unique(previous[self.slot[previous] < 0])
        if len(new) and self.rows + len(new) > len(self.table):  # room doubles: the table is copied O(log V) times
            grown = self.table.new_zeros(min(self.vocab_size, max(2 * len(self.table), self.rows + len(new), 64)),
                                         self.vocab_size)
            grown[:self.rows] = self.table[:self.rows]
            self.table = grown
        for part in new.split(512):  # the processor fills a float row per token: a bounded block at a time
            scores = self.processor(part[:, None], torch.zeros(len(part), self.vocab_size, device=self.device))
            self.table[self.rows:self.rows + len(part)] = scores > 0
            self.slot[part] = torch.arange(self.rows, self.rows + len(part), device=self.device)
            self.rows += len(part)
        return self.table.index_select(0, self.slot[previous])

    def __call__(self, last, logits):
        # The processor's arithmetic: delta added to the green logits, the others untouched.
        return logits.add(self.of(last[:, -1]), alpha=self.delta)


def watermark_z(docs: list[list[int]], vocab_size: int, eos_id: int, gamma: float = 0.25, key: int = KEY,
                device="cpu") -> list[float]:
    """z-score of each document's green-token count, scored as sampled: every token after the one before it,
    the first after the EOS prompt. A document written after a human prompt (sample.prompt=human) is scored
    whole, as a detector that cannot tell where the prompt ends scores it: its unmarked human words lower z.

    Documents of fewer than 2 tokens get 0.0: one token is no evidence either way.
    """
    import torch
    previous = sorted({t for doc in docs if len(doc) >= 2 for t in [eos_id, *np.asarray(doc[:-1]).tolist()]})
    lists = GreenLists(vocab_size, device, gamma, key=key)
    lists.of(torch.tensor(previous, dtype=torch.long, device=device))  # each previous token's green list, once
    green, row = lists.table.cpu(), lists.slot.cpu()  # token t's green list is green[row[t]]
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
