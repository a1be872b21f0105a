"""What a corpus whose generator is known can answer that a sample of text cannot.

A source with a truth (storyworld) lets the metrics score models against the
true distribution (excess cross-entropy, validity, the true rare words) and
lets fresh human text be written rather than reserved. The metrics, the
reference and mix.anchor_set=fresh ask for a truth; none asks a source's name.
"""
from typing import Protocol


class Truth(Protocol):
    def sample(self, n: int, seed: int) -> list[str]:
        """n new documents from the generator."""

    def sample_with_logprob(self, n: int, seed: int) -> list[tuple[str, float]]:
        """n new documents, each with its exact log-probability under the generator."""

    def rare_words(self) -> dict[str, float]:
        """The generator's rare words and their probabilities."""

    def expected_words_per_story(self) -> float: ...

    def is_valid(self, text: str) -> bool:
        """The generator could have written exactly this document."""

    def is_grammatical(self, text: str) -> bool:
        """Valid up to the consistency of names, which a small model learns last."""

    def valid_prefix(self, text: str) -> float:
        """The share of the document's tokens before its first error."""
