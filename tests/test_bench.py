"""scripts/bench.py end to end with the smallest settings: it runs and prints its ratio lines and the suite's seconds."""
import importlib.util
import re
from pathlib import Path

from accelerate.state import AcceleratorState

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"


def test_bench_prints_the_ratio_lines_and_the_suite_seconds(capsys):
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    try:
        ratios = bench.main(["--preset", "nano", "--context", "32", "--vocab", "300", "--docs", "60",
                             "--train-tokens", "1024", "--batch-size", "4", "--sample-docs", "4",
                             "--sample-batch-size", "4", "--device", "cpu",
                             "--suite-tokens", "3000", "--suite-words", "500"])
    finally:
        # The script's Accelerator and Trainer set accelerate's process-wide state; later tests start clean.
        AcceleratorState._reset_state(reset_partial_state=True)
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if re.match(r"(training|sampling) +testbed .* ratio \d+\.\d\dx$", line)]
    assert [line.split()[0] for line in lines] == ["training", "sampling", "sampling"], out
    assert "Trainer" in lines[0] and "top_k=50" in lines[1] and "top_k=0" in lines[2]
    assert set(ratios) == {"training", "sampling_default", "sampling_top_k0", "suite_seconds"}
    assert all(r > 0 for r in ratios.values())
    suite = [line for line in out.splitlines() if line.startswith("suite ")]
    assert len(suite) == 1 and re.search(r"on 3,\d{3} tokens", suite[0]), out
