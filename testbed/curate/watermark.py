"""The green-list watermark (Kirchenbauer et al., 2023), as transformers implements it.

While sampling, the previous token seeds a split of the vocabulary into a
green share gamma and a red rest, and delta is added to the green logits, so
watermarked text holds more green tokens than chance. Detection needs no
model: count green tokens and report the z-score against the share gamma
that unwatermarked text would have. Curation drops the documents whose
z-score passes a threshold, which removes the sampler's own text from a pool
it may have leaked into.

The green lists come from torch's generator on the given device, and CPU and
CUDA generators permute differently: detect on the device type that sampled.
"""
from collections import defaultdict

import torch
from transformers import GPT2Config, WatermarkDetector, WatermarkingConfig
from transformers.generation.logits_process import WatermarkLogitsProcessor

KEY = 15485863  # transformers' default hashing key


def make_processor(vocab_size: int, device, gamma: float = 0.25, delta: float = 2.0,
                   key: int = KEY) -> WatermarkLogitsProcessor:
    """The logits processor to hand to sample_corpus(watermark=...)."""
    return WatermarkLogitsProcessor(vocab_size, device, greenlist_ratio=gamma, bias=delta, hashing_key=key,
                                    seeding_scheme="lefthash", context_width=1)


def _detector(vocab_size: int, eos_id: int, gamma: float, delta: float, key: int, device) -> WatermarkDetector:
    config = GPT2Config(vocab_size=vocab_size, bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id)
    watermarking = WatermarkingConfig(greenlist_ratio=gamma, bias=delta, hashing_key=key, seeding_scheme="lefthash",
                                      context_width=1)
    detector = WatermarkDetector(config, device, watermarking)
    # The detector caches green-list lookups by prefix tensor, which hashes by
    # identity, so its cache never hits; with lefthash and context 1 the green
    # list depends on the previous token alone, so cache it by that id
    # (3,600 documents of 150 tokens, vocabulary 4,096: 21 s before, 5 s after).
    green = {}

    def is_green(prefix: torch.Tensor, target: int) -> bool:
        last = int(prefix[-1])
        if last not in green:
            green[last] = set(detector.processor._get_greenlist_ids(prefix).tolist())
        return target in green[last]
    detector._get_ngram_score_cached = is_green
    return detector


def watermark_z(docs: list[list[int]], vocab_size: int, eos_id: int, gamma: float = 0.25, delta: float = 2.0,
                key: int = KEY, device="cpu") -> list[float]:
    """z-score of each document's green-token count, scored as sampled: [eos_id] + doc.

    Documents of fewer than 2 tokens get 0.0: one token is no evidence either way.
    delta does not enter the test (only gamma does); it is taken so that the
    call mirrors the sampler's settings.
    The detector does not mask padding, so documents are batched by length.
    It also drops a leading BOS token (here the EOS) before scoring, and the
    EOS prompt is the context of the document's first token, so it is given twice.
    """
    detector = _detector(vocab_size, eos_id, gamma, delta, key, device)
    by_length = defaultdict(list)
    for i, doc in enumerate(docs):
        if len(doc) >= 2:
            by_length[len(doc)].append(i)
    z = [0.0] * len(docs)
    for idx in by_length.values():
        ids = torch.tensor([[eos_id, eos_id] + docs[i] for i in idx], dtype=torch.long, device=device)
        out = detector(ids, return_dict=True)
        for i, value in zip(idx, out.z_score.tolist()):
            z[i] = float(value)
    return z


def watermark_keep(z: list[float], z_threshold: float) -> list[bool]:
    """Keep what the detector does not flag (z <= threshold)."""
    return [value <= z_threshold for value in z]
