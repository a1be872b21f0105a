"""testbed: measure model collapse in tiny GPT models trained on their own samples."""

__version__ = "0.1.0"


class TestbedError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""

    __test__ = False  # not a pytest test class despite the name
