"""`synthetic-pretraining <command> …`: one console entry point for every tool of the project.

Each command lives in its own module with a `main(argv: list[str]) -> int | None`; modules are
imported only when their command runs, so `generate` never pays for importing JAX or TensorFlow.
"""

from __future__ import annotations

import importlib
import os
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
    "crash-trials": ("synthetic_pretraining.train.crash_trials",
                     "SIGKILL-and-resume trials of a tiny run, compared bit for bit (benchmark)"),
    "export": ("synthetic_pretraining.interop.hf",
               "write a checkpoint as a Hugging Face transformers T5 folder (--to hf)"),
}


def usage() -> str:
  lines = ["usage: synthetic-pretraining <command> [options]", "", "commands:"]
  lines += [f"  {name:<12} {help_}" for name, (_, help_) in COMMANDS.items()]
  lines += ["", "--debug (anywhere; or SP_DEBUG=1) shows the traceback of an error."]
  return "\n".join(lines)


_DEBUG_HINT = "(--debug shows the traceback)"


def _debug_requested(argv: list[str]) -> tuple[bool, list[str]]:
  """`--debug` anywhere on the command line (or SP_DEBUG=1): show tracebacks."""
  from synthetic_pretraining import environment  # pylint: disable=g-import-not-at-top
  debug = "--debug" in argv or environment.debug_requested()
  return debug, [a for a in argv if a != "--debug"]


def describe_error(error: BaseException) -> str:
  """One readable line (or a few, if the message has them) for an error that stops a command."""
  if isinstance(error, OSError) and error.filename is not None and error.strerror:
    where = os.fspath(error.filename)
    if error.filename2 is not None:
      where += f" -> {os.fspath(error.filename2)}"
    return f"{where}: {error.strerror}"
  message = str(error).strip()
  if isinstance(error, KeyError) and len(error.args) == 1:
    message = f"missing key {error.args[0]!r}"
  if not message:
    return type(error).__name__
  if isinstance(error, (ValueError, OSError, LookupError, RuntimeError)) and not isinstance(
      error, (KeyError, IndexError, NotImplementedError)):
    return message
  return f"{type(error).__name__}: {message}"


def main(argv: list[str] | None = None) -> int:
  """Runs one command. Errors end it with status 2 and one message on stderr (`--debug`, or
  SP_DEBUG=1, shows the traceback instead); Ctrl-C ends it with status 130."""
  argv = list(sys.argv[1:] if argv is None else argv)
  debug, argv = _debug_requested(argv)
  if not argv or argv[0] in ("-h", "--help", "help"):
    print(usage())
    return 0
  name, rest = argv[0], argv[1:]
  if name not in COMMANDS:
    print(f"unknown command {name!r}\n\n{usage()}", file=sys.stderr)
    return 2
  try:
    module = importlib.import_module(COMMANDS[name][0])
    result = module.main(rest)
  except KeyboardInterrupt:
    if debug:
      raise
    print(f"synthetic-pretraining {name}: interrupted", file=sys.stderr)
    return 130
  except Exception as e:  # pylint: disable=broad-except
    if debug:
      raise
    message = describe_error(e)
    hint = "" if _DEBUG_HINT in message else f" {_DEBUG_HINT}"  # E.g. a child command's error.
    print(f"synthetic-pretraining {name}: error: {message}{hint}", file=sys.stderr)
    return 2
  return int(result or 0)


if __name__ == "__main__":
  sys.exit(main())
