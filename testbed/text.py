"""Word-level view of text, shared by every metric that counts words.

Metrics count words rather than BPE ids: a small BPE vocabulary merges only
frequent pairs, so almost none of its ids are rare and a tail measured in ids
is nearly empty.
"""
import re

# Letters of any script ([^\W\d_]: word characters that are neither digits nor _), so "café" is one word, not "caf";
# the typographic apostrophe (U+2019) joins a word as the ASCII one does, since book and web text mostly uses it.
WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*")


def normal(word: str) -> str:
    """A matched word as the metrics count it: lower-cased, apostrophes as ASCII (don’t and don't are one word)."""
    return word.lower().replace("\u2019", "'")


def words(text: str) -> list[str]:
    """Lower-cased words of letters (any script); apostrophes inside a word are kept (don't, lily's)."""
    return [normal(w) for w in WORD.findall(text)]
