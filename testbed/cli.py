"""testbed's one command line: `testbed run CONFIG [key=value ...]`, `testbed compare RUN_DIR...`, `testbed eval`."""
import argparse
import os
import sys

from testbed import TestbedError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="testbed", description="Measure model collapse across generations of tiny GPTs.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train generation 0, then each generation on the previous one's samples")
    run.add_argument("config", help="YAML config, e.g. configs/quickstart.yaml")
    run.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. generations=5 model.n_layer=2 run_dir=/tmp/x")
    compare = commands.add_parser("compare", help="a table of each run's last generation against its generation 0")
    compare.add_argument("runs", nargs="+", metavar="RUN_DIR")
    compare.add_argument("--metrics", help="comma-separated metrics.jsonl keys (default: the headline metrics)")
    ev = commands.add_parser("eval", help="the metrics suite on one text file (and, with --model, one model)")
    ev.add_argument("--text", required=True, help="documents: a .jsonl with a text field (corpus.jsonl), else one a line")
    ev.add_argument("--model", help="a saved model directory, e.g. runs/quickstart/gen_002/model: adds perplexity")
    ev.add_argument("--human", help="human training text (same formats): defines rare words and frequency bands")
    ev.add_argument("--tokenizer", help="default: the run's tokenizer when --model lies in a run directory")
    ev.add_argument("--seed", type=int, default=0, help="seed of the fixed-size samples")
    ev.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. eval.sample_words=100000 data.source=storyworld")
    args = parser.parse_args(argv)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging

        logging.set_verbosity_error()  # progress lines are ours; library advice would drown them
        logging.disable_progress_bar()
        if args.command == "compare":
            from testbed.report.compare import load_run, table

            print(table([load_run(r) for r in args.runs], args.metrics.split(",") if args.metrics else None))
            return 0
        if args.command == "eval":
            import json

            from testbed.metrics.files import evaluate_file

            row = evaluate_file(args.text, args.model, args.human, args.tokenizer, args.overrides, args.seed,
                                say=lambda line: print(line, file=sys.stderr))
            print(json.dumps(row, indent=1))
            return 0
        from testbed.config import load_config
        from testbed.loop import run as run_experiment

        cfg = load_config(args.config, args.overrides)
        run_experiment(cfg)
    except TestbedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished generations are kept; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
