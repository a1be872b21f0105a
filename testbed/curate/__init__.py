"""Curation: what stands between a generation's candidate pool and its training set.

The steps run in the order of STEPS, cheapest and most certain first (provenance, then cheap rules, then
duplicates, then what needs a model); each is off unless the config turns it on, and docs/curation.md has the
table of them. A new step is one file (its keys, their checks and its filter: see step.py) and one line here.
"""
import dataclasses
import functools

from testbed.curate import dedup, detect, heuristics, perplexity, verify, watermark, whitelist

STEPS = [
    whitelist.Whitelist,
    heuristics.Heuristics,
    dedup.Exact,
    dedup.Near,
    verify.Verify,
    watermark.Watermark,
    detect.Detector,
    perplexity.Perplexity,
]


def curate_config() -> type:
    """The curate: section as a dataclass, a field per step section in step order, from STEPS as they are now."""
    sections, names = {}, set()
    for step in STEPS:
        _check_step(step, sections, names)
    return _curate_config(tuple(sections.items()))


def _check_step(step, sections: dict, names: set) -> None:
    """What the config, the curator and the reports read of a step, checked where it is registered: a step
    written without one of them would otherwise fail every run, curation on or off, with an AttributeError."""
    from testbed.curate.step import Step

    def broken(why):
        return TypeError(f"curation step {getattr(step, '__name__', step)!r}: {why} (docs/extending.md#a-curation-step)")
    if not (isinstance(step, type) and issubclass(step, Step)):
        raise broken("is not a subclass of testbed.curate.step.Step")
    for attribute in ("name", "section"):
        if not isinstance(getattr(step, attribute, None), str):
            raise broken(f"sets no {attribute} (a string)")
    config = getattr(step, "Config", None)
    if not dataclasses.is_dataclass(config):
        raise broken("its Config is not a dataclass of its keys")
    if not callable(getattr(config, "validate", None)):
        raise broken("its Config has no validate(self, cfg) (pass where a type says all)")
    if step.enabled is Step.enabled and "enabled" not in {f.name for f in dataclasses.fields(config)}:
        raise broken("its Config has no enabled field (or the step, its own enabled(c))")
    if step.name in names:
        raise broken(f"name {step.name!r} is another step's")
    if sections.setdefault(step.section, config) is not config:
        raise broken(f"shares curate.{step.section} with a step whose Config is another class: share the class")
    names.add(step.name)


@functools.cache
def _curate_config(sections: tuple) -> type:
    # Cached so that the same steps give the same class, and configs built from them compare equal.
    return dataclasses.make_dataclass(
        "CurateConfig", [(name, cls, dataclasses.field(default_factory=cls)) for name, cls in sections],
        namespace={"__module__": __name__, "__doc__": "Steps applied, in the order of testbed.curate.STEPS, to "
                                                      "the training pool of each generation g >= 1."})


CurateConfig = curate_config()
