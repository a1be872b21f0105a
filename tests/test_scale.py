"""scripts/scale.py end to end at the smallest sizes, in one process: it runs the loop per size and prints
a row of seconds, memory and exponents per stage (the figures themselves are not checked: they are timings),
and with --corpus-only, the data path alone."""
import importlib.util
import re
from pathlib import Path

SCALE = Path(__file__).resolve().parents[1] / "scripts" / "scale.py"


def test_scale_prints_a_row_per_stage_with_its_exponent(capsys):
    spec = importlib.util.spec_from_file_location("scale", SCALE)
    scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale)
    exponents = scale.main(["--base", "40", "--sample-base", "10", "--factors", "1,2", "--inline", "--threads", "1"])
    out = capsys.readouterr().out
    assert set(exponents) == {"corpus", "sample"}
    assert set(exponents["corpus"]) == {"setup", "mix", "train", "sample", "evaluate", "commit"}
    assert set(exponents["sample"]) == {"mix", "train", "sample", "evaluate", "commit"}
    assert "40 docs" in out and "80 docs" in out and "10 samples" in out and "20 samples" in out
    cell = r"\s+\d+\.\d\ds\s+[\d,]+ MiB"
    rows = re.findall(rf"^  (\w+){cell}{cell}\s+(-?\d+\.\d\d|n/a)\s+(-?\d+\.\d\d|n/a)\s+(met|NOT MET|n/a)$", out, re.M)
    assert [r[0] for r in rows] == ["setup", "mix", "train", "sample", "evaluate", "commit",
                                    "mix", "train", "sample", "evaluate", "commit"], out
    for (stage, t_exp, _, verdict), sweep in zip(rows, ["corpus"] * 6 + ["sample"] * 5):
        assert t_exp == scale.fmt(exponents[sweep][stage])
        assert verdict == ("n/a" if t_exp == "n/a" else "met" if float(t_exp) <= scale.GOAL else "NOT MET")


def test_slope_is_the_log_log_exponent():
    spec = importlib.util.spec_from_file_location("scale", SCALE)
    scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale)
    assert abs(scale.slope([1, 4, 16], [3, 12, 48]) - 1.0) < 1e-12
    assert abs(scale.slope([1, 4, 16], [2, 32, 512]) - 2.0) < 1e-12
    assert scale.slope([1, 4], [0.0, 1.0]) is None


def test_corpus_only_times_each_step_and_sizes_the_ids(capsys):
    spec = importlib.util.spec_from_file_location("scale", SCALE)
    scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale)
    r = scale.main(["--corpus-only", "--docs", "300", "--threads", "1"])
    out = capsys.readouterr().out
    assert list(r["steps"]) == scale.DATA_STEPS == ["load", "split", "tokenizer", "encode", "stats", "pack"]
    assert 250 <= r["docs"] <= 270  # 300 stories, 30 held out, the exact duplicates left out
    # One flat uint16 array and its offsets; int32 blocks of the quickstart's context, the tail dropped.
    assert r["ids"] == 2 * r["tokens"] + 8 * (r["docs"] + 1)
    assert r["blocks"] == 4 * ((r["tokens"] + r["docs"]) // 256 * 256) and r["blocks_dtype"] == "int32"
    assert r["peak"] == max(rss for _, rss in r["steps"].values()) > r["baseline"]
    assert "300 storyworld stories" in out and f"{r['tokens']:,} tokens" in out
    rows = re.findall(r"^  (\w+)\s+\d+\.\ds\s+[\d,]+ MiB$", out, re.M)
    assert rows == scale.DATA_STEPS, out
