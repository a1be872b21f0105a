"""The metrics as Hugging Face `evaluate` modules, one per family.

    import evaluate
    from testbed.metrics import hf
    evaluate.load(hf.path("collapse_tail")).compute(data=synthetic_texts, human=human_texts)

Each module wraps the same functions the run's Evaluator calls, so the numbers
agree. evaluate takes seconds to import, so nothing on a run's path imports it.
"""
from pathlib import Path

MODULES = ("collapse_diversity", "collapse_shape", "collapse_tail", "collapse_degeneration", "collapse_perplexity")


def path(name: str) -> str:
    """The module's directory, as evaluate.load takes it."""
    if name not in MODULES:
        raise ValueError(f"no evaluate module {name!r}; choose from {', '.join(MODULES)}")
    return str(Path(__file__).parent / name)


def load(name: str, **kwargs):
    import evaluate

    return evaluate.load(path(name), **kwargs)
