"""What a curation step is. The steps, in the order they run, are listed in testbed/curate/__init__.py.

A step is one file: the dataclass of its keys (curate.<section>.*) with a
validate() for what a type cannot express, and a Step subclass whose keep()
filters the pool. testbed.config imports every step file for its keys, so a
step file imports torch, transformers and the like inside its functions.
"""
from testbed import TestbedError


class Step:
    """One curation step; a subclass sets name, section and Config and writes keep().

    name: what the reports and the log call it. section: where its keys live,
    curate.<section>.*, a Config instance; two steps may share one, as
    dedup_exact and dedup_near share curate.dedup.
    """
    name: str
    section: str
    Config: type

    @staticmethod
    def enabled(c) -> bool:
        return c.enabled

    def __init__(self, c, curator):
        """c: the step's section; curator: the run's shared inputs (human text, models, seeds).

        Runs before anything is written, so a step that cannot run stops the run here.
        """
        self.c, self.curator = c, curator

    def keep(self, g: int, pool: list, newest: list) -> tuple[list[bool], dict]:
        """keep[i] for each (label, Doc) of generation g's pool, and the figures this step adds to its report.

        newest: everything model g-1 wrote (the pool may hold part of it).
        """
        raise NotImplementedError


# One-line errors naming the key, shared by the steps' validate().

def at_least(key: str, value, low) -> None:
    if value < low:
        raise TestbedError(f"{key}={value} must be >= {low}")


def positive_or_null(key: str, value) -> None:
    if value is not None and value <= 0:
        raise TestbedError(f"{key}={value} must be > 0 (or null for the default)")


def share(key: str, value: float) -> None:
    if not 0 <= value <= 1:
        raise TestbedError(f"{key}={value} must be in [0, 1]")
