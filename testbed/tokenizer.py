"""The run's byte-level BPE, trained once on generation 0's human training split.

Every generation shares it, so perplexities and token counts compare across
generations. Byte-level means any text, synthetic or human, encodes without
unknown tokens.
"""
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"


def train_tokenizer(docs: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(docs, trainer=trainer, length=len(docs))
    # One token is document start, end and padding: documents are packed
    # back to back, so the end of one is the start of the next.
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, bos_token=EOS, pad_token=EOS)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast.from_pretrained(str(path))


def encode(tokenizer: PreTrainedTokenizerFast, docs: list[str]) -> list[list[int]]:
    """Token ids of each document (batched in Rust).

    A literal "<|endoftext|>" inside a document is encoded as text: only the
    loop itself marks where documents end.
    """
    return tokenizer(docs, add_special_tokens=False, split_special_tokens=True)["input_ids"] if docs else []
