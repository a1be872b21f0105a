"""testbed: measure model collapse in tiny GPT models trained on their own samples."""

__version__ = "0.1.0"


class TestbedError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""

    __test__ = False  # not a pytest test class despite the name


def gen_name(g: int) -> str:
    """Generation g's name: its folder in a run directory, and how provenance, curation and reports name it."""
    return f"gen_{g:03d}"


def first_line(e: BaseException) -> str:
    """An exception's message cut to its first line (a library's message runs on into advice and tracebacks that
    would break testbed's one-line errors); its class name where it has no message."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def quiet_libraries() -> None:
    """A run's progress lines are testbed's: transformers' advice and progress bars would drown them, and in a
    notebook show red, as if something were wrong. datasets logs a parse error testbed reports itself."""
    import warnings

    import datasets
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    # tqdm.auto in a Jupyter without ipywidgets: the run's lines still show, only the bars do not (docs/labs.md).
    warnings.filterwarnings("ignore", message="IProgress not found")
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    # Offline without HF_HUB_OFFLINE, huggingface_hub retries for ~25 s and logs each try (10 lines) before the
    # one-line error testbed prints about it.
    import huggingface_hub.utils

    huggingface_hub.utils.logging.set_verbosity_error()
