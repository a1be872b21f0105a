"""Typed run configuration: YAML keys are the dataclass field names.

A config is validated once, when it is built, so a typo or a wrong type is
reported before anything is trained or written. The resolved config is saved
with the run and is its identity.
"""
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from testbed import TestbedError


@dataclass
class DataConfig:
    source: Literal["storyworld", "local", "hub"] = "storyworld"
    name: str = "roneneldan/TinyStories"  # hub dataset, with source=hub
    split: str = "train"  # hub split
    path: str | None = None  # local file (.txt, .jsonl, .parquet), with source=local
    text_field: str = "text"  # column holding the text in .jsonl / .parquet / hub rows
    separator: str = "line"  # .txt documents: "line", "paragraph" (blank line) or a literal string such as <|endoftext|>
    max_docs: int | None = None  # take the first N documents (hub: streamed, so only N are downloaded)
    docs: int = 4000  # storyworld: how many stories to write
    heldout_docs: int = 400  # documents held out from training, for evaluation


@dataclass
class TokenizerConfig:
    vocab_size: int = 2048


@dataclass
class ModelConfig:
    preset: Literal["nano", "tiny", "small", "medium", "large"] = "tiny"
    # Each of these, when set, overrides the preset.
    n_layer: int | None = None
    n_embd: int | None = None
    n_head: int | None = None
    context: int | None = None


@dataclass
class TrainConfig:
    tokens: int = 500_000  # token budget per generation: every generation sees the same compute
    batch_size: int = 16  # blocks per optimiser step, before accumulation
    grad_accum: int = 1
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup: float = 0.05  # share of steps spent warming up
    weight_decay: float = 0.1
    # auto: bf16 where the GPU has it, else fp32. ("fp32", not accelerate's "no": YAML reads an unquoted no as false.)
    mixed_precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # How generation g >= 1 starts: fresh weights, generation g-1's, or generation 0's.
    init: Literal["scratch", "previous", "first"] = "scratch"


@dataclass
class SampleConfig:
    size: int = 3600  # synthetic corpus size, in `unit`s
    unit: Literal["docs", "tokens"] = "docs"
    # Pure ancestral sampling is temperature 1, top_k 0 (off), top_p 1 (off).
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_new_tokens: int | None = None  # default: fill the model context
    batch_size: int = 128
    # Where each synthetic document starts: the end-of-document token alone, or
    # the first `prompt_tokens` tokens of a random human training document.
    prompt: Literal["eos", "human"] = "eos"
    prompt_tokens: int = 8


@dataclass
class MixConfig:
    # replace: only the newest synthetic corpus; accumulate: human + every
    # synthetic corpus so far; anchor: the newest synthetic corpus with a share
    # `anchor_fraction` of human documents.
    regime: Literal["replace", "accumulate", "anchor"] = "replace"
    anchor_fraction: float = 0.1
    # fixed: the same curated human documents anchor every generation; fresh:
    # a new seeded draw from the human training split each generation.
    anchor_set: Literal["fixed", "fresh"] = "fixed"
    # grow: the training set is the whole pool; fixed: a seeded subsample of
    # `docs` documents from the pool each generation.
    size: Literal["grow", "fixed"] = "grow"
    docs: int | None = None  # with size=fixed; default: the human training split's size


@dataclass
class EvalConfig:
    # Size-sensitive metrics (distinct-n, rare-token recall) are computed on a
    # seeded sample of exactly this many words, every generation.
    sample_words: int = 20_000
    rare_max_count: int = 2  # a word type is rare if it occurs at most this often in the human training split
    heldout_docs: int | None = None  # cap on held-out documents scored for perplexity
    truth_docs: int = 300  # storyworld: fresh true stories scored for the excess cross-entropy
    batch_size: int = 32


@dataclass
class Config:
    run_dir: str = "runs/quickstart"
    seed: int = 0
    generations: int = 3  # generations after generation 0
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> None:
        """Range checks that a type alone cannot express."""
        minimum = {
            "generations": 0, "data.docs": 1, "data.heldout_docs": 1,
            "tokenizer.vocab_size": 257,  # the 256 byte symbols plus one merge at least
            "train.tokens": 1, "train.batch_size": 1, "train.grad_accum": 1,
            "sample.size": 1, "sample.batch_size": 1, "sample.prompt_tokens": 1,
            "eval.sample_words": 1, "eval.truth_docs": 1, "eval.batch_size": 1, "eval.rare_max_count": 1,
        }
        for key, low in minimum.items():
            if _get(self, key) < low:
                raise TestbedError(f"{key}={_get(self, key)} must be >= {low}")
        if not self.train.lr > 0:  # written so that NaN fails too
            raise TestbedError(f"train.lr={self.train.lr} must be > 0")
        for key in ("data.max_docs", "model.n_layer", "model.n_embd", "model.n_head", "model.context",
                    "mix.docs", "eval.heldout_docs", "sample.max_new_tokens"):
            value = _get(self, key)
            if value is not None and value <= 0:
                raise TestbedError(f"{key}={value} must be > 0 (or null for the default)")
        if not self.sample.temperature > 0:
            raise TestbedError(f"sample.temperature={self.sample.temperature} must be > 0")
        if self.sample.top_k < 0:
            raise TestbedError(f"sample.top_k={self.sample.top_k} must be >= 0 (0 turns it off)")
        if not 0 < self.sample.top_p <= 1:
            raise TestbedError(f"sample.top_p={self.sample.top_p} must be in (0, 1] (1 turns it off)")
        if not 0 <= self.mix.anchor_fraction <= 1:
            raise TestbedError(f"mix.anchor_fraction={self.mix.anchor_fraction} must be in [0, 1]")
        if not 0 <= self.train.warmup < 1:
            raise TestbedError(f"train.warmup={self.train.warmup} must be in [0, 1)")
        if not self.train.weight_decay >= 0:
            raise TestbedError(f"train.weight_decay={self.train.weight_decay} must be >= 0")
        if not 0 <= self.train.min_lr_ratio <= 1:
            raise TestbedError(f"train.min_lr_ratio={self.train.min_lr_ratio} must be in [0, 1]")
        if self.data.source == "local" and not self.data.path:
            raise TestbedError("data.path is not set: data.source=local needs data.path=FILE (.txt, .jsonl or .parquet)")
        if not self.data.separator:
            raise TestbedError('data.separator is empty: use "line", "paragraph" or a literal string such as <|endoftext|>')


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read a YAML file (or the defaults when path is None), apply key=value overrides, validate."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise TestbedError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise TestbedError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(raw, dict):
            raise TestbedError(f"{path}: the top level must be a mapping of keys to values")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TestbedError(f"override {item!r} is not key=value (for example generations=5 or model.n_layer=2)")
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            if node.get(part) is None:  # absent, or a section left empty in the file
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise TestbedError(f"override {item!r}: {part} is not a section")
        node[leaf] = _Raw(value)
    cfg = _build(Config, raw, "")
    cfg.validate()
    return cfg


class _Raw(str):
    """A command-line value, read by the type of its key: `separator=---` stays a
    string, `generations=5` becomes an int, where plain YAML would turn the first into null."""


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def _build(cls, raw, prefix: str):
    if not isinstance(raw, dict):
        raise TestbedError(f"{prefix.rstrip('.') or 'config'} must be a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        if key not in hints:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise TestbedError(f"unknown config key {prefix}{key}{hint}; allowed keys: {', '.join(prefix + n for n in names)}")
        kwargs[key] = _coerce(hints[key], value, prefix + key)
    return cls(**kwargs)


def _coerce(tp, value, key: str):
    if isinstance(value, _Raw):
        quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
        text = _is_text(tp) and not quoted and value.lower() not in ("null", "~", "")
        value = str(value) if text else yaml.safe_load(value or "null")
    if dataclasses.is_dataclass(tp):
        return _build(tp, value if value is not None else {}, key + ".")
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise TestbedError(f"{key}={value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (tp,) = [a for a in args if a is not type(None)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise TestbedError(f"{key}={value!r} has the wrong type: expected {tp.__name__}, got {type(value).__name__}")
    return value


def _is_text(tp) -> bool:
    args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    if typing.get_origin(tp) is Literal:
        return all(isinstance(a, str) for a in args)
    return all(a is str for a in args)


def _get(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    keys = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            keys.append(f"{prefix}{k}")
    return keys
