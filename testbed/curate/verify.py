"""Verifiers: keep only the text a checker accepts.

A verifier is any callable text -> bool, so a project can plug in its own
(a grammar, a unit test, a fact checker) as "package.module:function".
Verification is the strongest curation there is when it exists: on the
storyworld corpus the grammar itself says whether a story could have come
from the true distribution.
"""
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from testbed import TestbedError
from testbed.curate.step import Step
from testbed.text import words

Verifier = Callable[[str], bool]
NAMES = ("storyworld", "storyworld_lenient", "lexicon", "package.module:function")
_ENDINGS = tuple(".!?\"'")


@dataclass
class VerifierConfig:
    enabled: bool = False
    # storyworld: the grammar's own validator (a perfect verifier); storyworld_lenient: the grammar without its
    # long-range check, a character's name may change (an imperfect verifier: it passes some invalid stories); lexicon: every
    # word occurs in the human training split and the text ends a sentence;
    # or package.module:function, any callable text -> bool.
    name: str = "storyworld"

    def validate(self, cfg) -> None:
        pass  # the name is checked by loading it, when the curator is built


def lexicon_verifier(human_texts: list[str]) -> Verifier:
    """Accepts text made only of words the human training text uses, ending like a sentence.

    A weak verifier that works on any corpus: it rejects invented words and
    documents cut off mid-sentence, not fluent text that says something new.
    """
    vocab = {w for text in human_texts for w in words(text)}

    def accepts(text: str) -> bool:
        w = words(text)
        return bool(w) and all(x in vocab for x in w) and text.strip().endswith(_ENDINGS)
    return accepts


def load_callable(name: str) -> Verifier:
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name.split(".")[0]):  # the module itself, not one it imports
            raise TestbedError(f"curate.verifier.name={name!r}: no module {e.name!r} on the Python path; install its "
                               "package, or run with its folder on PYTHONPATH (PYTHONPATH=. for the current one)") from None
        raise TestbedError(f"curate.verifier.name={name!r}: importing {module_name} failed ({_one_line(e)})") from None
    except Exception as e:  # a syntax error, or whatever the module raises as it is imported
        raise TestbedError(f"curate.verifier.name={name!r}: importing {module_name} raised {_one_line(e)}") from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise TestbedError(f"curate.verifier.name={name!r}: {module_name} has no {attr!r}; expected the form "
                           "package.module:function")
    if not callable(fn):
        raise TestbedError(f"curate.verifier.name={name!r} is not callable; expected the form package.module:function")
    return fn


def checked(name: str, fn: Callable, probe: list[str]) -> Verifier:
    """A verifier of the user's, called once on a human document when the run starts: a wrong signature or a
    missing return would otherwise stop the run at generation 1, or reject every document, after generation 0."""
    try:
        inspect.signature(fn).bind("")
    except TypeError:
        raise TestbedError(f"curate.verifier.name={name!r} takes {inspect.signature(fn)}; a verifier is called with "
                           "one argument, the text, and returns True to keep it") from None
    except ValueError:
        pass  # a builtin without a signature: the call below tells

    def verifier(text: str, where: str = "a later document") -> bool:
        try:
            answer = fn(text)
        except Exception as e:
            raise TestbedError(f"curate.verifier.name={name!r} raised {_one_line(e)} on {where}; a verifier takes "
                               "the text and returns True to keep it") from None
        if answer is None:
            raise TestbedError(f"curate.verifier.name={name!r} returned None on {where}; a verifier returns True to "
                               "keep a text, False to drop it")
        return answer

    for text in probe:
        verifier(text, "the first human document")
    return verifier


def _one_line(e: Exception) -> str:
    detail = " ".join(str(e).split())  # one line, whatever the exception holds (here, maybe the text)
    return f"{type(e).__name__}: {detail if len(detail) <= 80 else detail[:77] + '...'}"


def get_verifier(name: str, human_texts: list[str]) -> Verifier:
    if name in ("storyworld", "storyworld_lenient"):
        from testbed.corpus.storyworld import StoryWorld
        return StoryWorld().is_valid if name == "storyworld" else StoryWorld().is_grammatical
    if name == "lexicon":
        return lexicon_verifier(human_texts)
    module_name, sep, attr = name.partition(":")
    if sep and module_name and attr:
        return checked(name, load_callable(name), human_texts[:1])
    raise TestbedError(f"curate.verifier.name={name!r}: expected one of {', '.join(NAMES)}")


def verify_keep(verifier: Verifier, texts: list[str]) -> list[bool]:
    return [bool(verifier(t)) for t in texts]


class Verify(Step):
    name = section = "verifier"
    Config = VerifierConfig

    def __init__(self, c, curator):
        super().__init__(c, curator)
        self.verifier = get_verifier(c.name, [d.text for d in curator.human])

    def keep(self, g, pool, newest):
        return verify_keep(self.verifier, [d.text for _, d in pool]), {}
