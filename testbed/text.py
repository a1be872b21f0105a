"""Word-level view of text, shared by every metric that counts words.

Metrics count words rather than BPE ids: a small BPE vocabulary merges only
frequent pairs, so almost none of its ids are rare and a tail measured in ids
is nearly empty.
"""
import re

WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")


def words(text: str) -> list[str]:
    """Lower-cased alphabetic words; apostrophes inside a word are kept (don't, lily's)."""
    return [w.lower() for w in WORD.findall(text)]
