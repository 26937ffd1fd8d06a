"""`synthetic-pretraining <command> …`: one console entry point for every tool of the project.

Each command lives in its own module with a `main(argv: list[str]) -> int | None`; modules are
imported only when their command runs, so `generate` never pays for importing JAX or TensorFlow.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": ("synthetic_pretraining.train.main", "pre-train / fine-tune / evaluate from gin files"),
    "generate": ("synthetic_pretraining.generators.cli",
                 "write a synthetic task's examples to files in the release's format"),
    "prepare": ("synthetic_pretraining.data.prepare",
                "convert official downstream raw files into input<TAB>target splits"),
    "vocab": ("synthetic_pretraining.data.train_vocab",
              "train an offline SentencePiece vocabulary from local text"),
    "bench": ("synthetic_pretraining.bench", "benchmarks that print figures (train, generators)"),
    "results": ("synthetic_pretraining.experiments.results",
                "paper tables (% of the benefit of natural pre-training) from run directories"),
    "stats": ("synthetic_pretraining.train.param_stats",
              "per-parameter / per-group statistics of a checkpoint, or the difference of two"),
    "mini": ("synthetic_pretraining.experiments.mini",
             "the CPU mini-experiment: pre-train, fine-tune, % of benefit table"),
}


def usage() -> str:
  lines = ["usage: synthetic-pretraining <command> [options]", "", "commands:"]
  lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] in ("-h", "--help", "help"):
    print(usage())
    return 0
  name, rest = argv[0], argv[1:]
  if name not in COMMANDS:
    print(f"unknown command {name!r}\n\n{usage()}", file=sys.stderr)
    return 2
  module = importlib.import_module(COMMANDS[name][0])
  result = module.main(rest)
  return int(result or 0)


if __name__ == "__main__":
  sys.exit(main())
