"""scripts/scale.py end to end at the smallest sizes, in one process: it runs the loop per size and prints
a row of seconds, memory and exponents per stage (the figures themselves are not checked: they are timings)."""
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
