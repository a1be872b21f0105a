"""Rewrite the key table of docs/metrics.md from the metric table, testbed/metrics/spec.py.

    python scripts/metrics_doc.py

Only the lines between spec.DOCS_START and spec.DOCS_END change; the prose around them is the page's own.
tests/test_docs.py fails when the spec was edited and this script was not run.
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from testbed.metrics import spec  # noqa: E402

PAGE = ROOT / "docs" / "metrics.md"


def rewrite(text: str) -> str:
    before, start, rest = text.partition(spec.DOCS_START)
    _, end, after = rest.partition(spec.DOCS_END)
    if not start or not end:
        raise SystemExit(f"{PAGE}: the lines {spec.DOCS_START!r} and {spec.DOCS_END!r} mark where the table goes")
    return f"{before}{start}\n{spec.markdown()}\n{end}{after}"


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()  # -h reads, and writes nothing
    text = PAGE.read_text(encoding="utf-8")
    new = rewrite(text)
    if new != text:
        PAGE.write_text(new, encoding="utf-8")
    print(f"{PAGE.relative_to(ROOT)}: {'rewritten' if new != text else 'already up to date'}")
