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
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"
UNK = "<|unk|>"


def train_tokenizer(docs: list[str], vocab_size: int, kind: str = "bpe") -> PreTrainedTokenizerFast:
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
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(docs, trainer=trainer, length=len(docs))
    # One token is document start, end and padding: documents are packed
    # back to back, so the end of one is the start of the next.
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=EOS, **extra)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast.from_pretrained(str(path))


def encode(tokenizer: PreTrainedTokenizerFast, docs: list[str]) -> list[list[int]]:
    """Token ids of each document (batched in Rust).

    A literal "<|endoftext|>" inside a document is encoded as text: only the
    loop itself marks where documents end.
    """
    return tokenizer(docs, add_special_tokens=False, split_special_tokens=True)["input_ids"] if docs else []
