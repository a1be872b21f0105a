"""The run's tokenizer, trained once on generation 0's human training split.

Every generation shares it, so perplexities and token counts compare across
generations. Two kinds, both lossless on the text they were trained on:

  bpe   byte-level BPE: any text encodes without unknown tokens. A rare word
        is several pieces, which a small model must learn to spell.
  word  one token per word (with its leading space) or punctuation run, over
        the same byte-level pre-tokenization: a rare word is one token, so a
        model keeps or loses it whole. Words the training split lacks encode
        as <|unk|>. For closed vocabularies such as storyworld's.
"""
import functools
import re
import sys
from itertools import chain
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerFast

from testbed import TestbedError, first_line

EOS = "<|endoftext|>"
UNK = "<|unk|>"

# A run of characters without whitespace longer than this is not a word: BPE trains on each run whole, at a
# cost that grows with the square of its length (a 200 kB run took 20 s, a 5 MB one hours), and encodes it
# slowly too. Such runs are cut into pieces of this length, for training and encoding alike, so a document
# costs time in proportion to its length. Text has none (the longest in the shared corpora is 61 characters),
# so ordinary documents train and encode exactly as before.
MAX_RUN = 1000
# Training on many such pieces still costs (merges x symbols: 1 MB of random letters took 8 s), and they teach
# nothing about text, so tokenizer training reads at most this much of a document that has one.
MAX_TRAIN_CHARS = 100_000
_LONG_RUN = re.compile(r"(?<!\S)\S{%d,}" % (MAX_RUN + 1))  # anchored at a run's start: linear in the text
_BATCH = 4096  # documents encoded per call, between progress updates
# The byte-level pre-tokenizer's own split (GPT-2's), spelled out so the word kind can put one piece before it.
_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def train_tokenizer(docs: list[str], vocab_size: int, kind: str = "bpe", say=None) -> PreTrainedTokenizerFast:
    if kind == "word":
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        # vocab_size keeps the most frequent words; the rest become <|unk|>.
        trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=[EOS, UNK], show_progress=False)
        extra = {"unk_token": UNK}
    else:
        tok = Tokenizer(models.BPE())
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[EOS],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        extra = {}
    if kind == "word":
        # Each generation learns from the text the one before it wrote, re-encoded. A sampled <|unk|> decodes
        # to the text "<|unk|>", which byte-level splitting cuts into "<|", "unk", "|>": three unknowns, which
        # the next model writes back as three, and so on (the unknowns of a replace run grew 54, 310, 1021,
        # 6044, ... 58849 over 9 generations, 14% of the last corpus). Kept whole, it is one id again.
        # Every other text is split exactly as by ByteLevel's own regex.
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r" ?%s|%s" % (re.escape(UNK), _GPT2_SPLIT)), "isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    cut = [0]

    def feed():
        # Shown only when training takes more than a few seconds.
        for doc in tqdm(docs, desc="tokenizer", unit="docs", delay=3, disable=None, leave=False, file=sys.stderr):
            pieces = _pieces(doc)
            if len(pieces) > 1:
                cut[0] += 1
                pieces = _pieces(doc[:MAX_TRAIN_CHARS])
            yield from pieces
    tok.train_from_iterator(feed(), trainer=trainer, length=len(docs))
    if cut[0]:
        (say or functools.partial(print, file=sys.stderr))(
            f"note: {cut[0]} document(s) hold a run of more than {MAX_RUN:,} characters without whitespace: the "
            f"tokenizer trains on the first {MAX_TRAIN_CHARS:,} characters of each, and encodes such runs in pieces "
            f"of {MAX_RUN:,}")
    # One token is document start, end and padding: documents are packed
    # back to back, so the end of one is the start of the next.
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=EOS, **extra)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    if not Path(path).is_dir():  # else from_pretrained reads the path as a Hub repository's name and asks the Hub
        raise TestbedError(f"{path}: no tokenizer folder there; restore it from a copy, or start again in a new "
                           "folder")
    try:
        return PreTrainedTokenizerFast.from_pretrained(str(path))
    except Exception as e:  # tokenizers raises a bare Exception for a damaged tokenizer.json
        reason = first_line(e)
        raise TestbedError(f"{path}: not a readable tokenizer ({reason}); restore it from a copy, or start again in a "
                           "new folder") from None


def check_reads_unk_whole(tokenizer: PreTrainedTokenizerFast, path: str | Path) -> None:
    """A word tokenizer saved before the fix above (2026-11-27) reads a written <|unk|> as three unknowns. A run
    continued with it, or a lab arm started from its generation 0, would measure that artifact again, silently:
    the run's own tokenizer is always the one it loads."""
    if tokenizer.unk_token is None:  # bpe: no unknowns
        return
    pieces = len(encode(tokenizer, [UNK]).flat)
    if pieces != 1:
        raise TestbedError(f"{path}: a word tokenizer saved before the fix of 2026-11-27, which reads a written {UNK} "
                           f"as {pieces} unknowns, so each generation hands the next more of them "
                           "(docs/configuration.md#tokenizer); start this run again in a new run_dir (a lab: a new --out)")


class TokenIds:
    """The token ids of many documents in one flat array: ids[i] is a view of document i's, not a copy.

    As lists of Python ints a token costs about 40 bytes, too many for a corpus of millions of
    documents; here it costs 2 (4 where the vocabulary exceeds 65,536 ids).
    """

    def __init__(self, flat: np.ndarray, offsets: np.ndarray):
        self.flat, self.offsets = flat, offsets  # document i is flat[offsets[i]:offsets[i + 1]]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        i = range(len(self))[i]  # negative and out-of-range indices as a list takes them
        return self.flat[self.offsets[i]:self.offsets[i + 1]]

    def __iter__(self):
        for start, end in zip(self.offsets[:-1], self.offsets[1:]):
            yield self.flat[start:end]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __eq__(self, other):
        """Equal to any sequence holding the same ids per document, lists of lists included."""
        if not isinstance(other, (TokenIds, list, tuple)):
            return NotImplemented
        return len(self) == len(other) and all(np.array_equal(a, b) for a, b in zip(self, other))

    __hash__ = None


def unknown_words(tokenizer: PreTrainedTokenizerFast, ids: list) -> list[str]:
    """A note when the word kind leaves more than 1% of the human split unknown: those words are one <|unk|> to every
    model, so their recall is out of reach and predicting the cheap unknown flatters perplexity (open text: bpe)."""
    unk = tokenizer.unk_token_id
    if unk is None:
        return []
    tokens = sum(len(d) for d in ids)
    unknown = sum(int((np.asarray(d) == unk).sum()) for d in ids)
    if not tokens or unknown / tokens <= 0.01:
        return []
    return [f"note: {unknown / tokens:.1%} of the human training split's tokens are {UNK} (tokenizer.kind=word keeps "
            f"{len(tokenizer) - 2:,} words): no model can write the words it left out, and predicting {UNK} flatters "
            "perplexity; raise tokenizer.vocab_size, or tokenizer.kind=bpe for open text"]


def id_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= 1 << 16 else np.int32


def encode(tokenizer: PreTrainedTokenizerFast, docs: list[str]) -> TokenIds:
    """Token ids of each document, in one flat array (batched: Rust encodes each batch in parallel).

    A literal "<|endoftext|>" inside a document is encoded as text: only the
    loop itself marks where documents end.
    """
    flat = np.zeros(0, id_dtype(len(tokenizer)))
    offsets = np.zeros(len(docs) + 1, np.int64)
    n = 0
    bar = tqdm(total=len(docs), desc="encoding", unit="docs", delay=3, disable=None if len(docs) > _BATCH else True,
               leave=False, file=sys.stderr)
    for start in range(0, len(docs), _BATCH):
        pieces = [_pieces(doc) for doc in docs[start:start + _BATCH]]
        encoded = tokenizer([p for ps in pieces for p in ps], add_special_tokens=False, split_special_tokens=True)["input_ids"]
        lengths, at = [], 0
        for ps in pieces:
            lengths.append(sum(len(e) for e in encoded[at:at + len(ps)]))
            at += len(ps)
        total = sum(lengths)
        if n + total > len(flat):
            # Grown in place by a quarter at least: the total is unknown until the end, and growing by
            # less than doubling bounds the unused room; realloc moves a large array's pages, not its bytes.
            flat.resize(max(n + total, len(flat) * 5 // 4), refcheck=False)
        # A document's pieces are consecutive, so the batch's ids in order are its documents' ids in order.
        flat[n:n + total] = np.fromiter(chain.from_iterable(encoded), flat.dtype, count=total)
        offsets[start + 1:start + 1 + len(lengths)] = n + np.cumsum(lengths)
        n += total
        bar.update(len(pieces))
    bar.close()
    flat.resize(n, refcheck=False)
    return TokenIds(flat, offsets)


def _pieces(doc: str) -> list[str]:
    """The document, or where it holds runs longer than MAX_RUN, the document cut inside those runs."""
    if len(doc) <= MAX_RUN or not _LONG_RUN.search(doc):
        return [doc]
    pieces, start = [], 0
    for run in _LONG_RUN.finditer(doc):
        for cut in range(run.start() + MAX_RUN, run.end(), MAX_RUN):
            pieces.append(doc[start:cut])
            start = cut
    pieces.append(doc[start:])
    return pieces
