"""`python -m synthetic_pretraining.train.main --gin_file=… --gin.KEY=VALUE`: T5X-like entry point.

Gin files are looked up as given, then under the search paths (default: the repository's `gin/`
folder, so `--gin_file=runs/pretrain.gin` works from anywhere). `--gin.KEY=VALUE` adds a binding
(`--gin.TRAIN_STEPS=1000`, `--gin.train.seed=3`); `--gin_bindings` takes one binding per flag.
The gin files choose what runs: they bind `run.function` (train by default; `evaluate` for eval.gin).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

import gin

DEFAULT_GIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "gin")


class GinConfigError(ValueError):
  """A gin file or binding is wrong: unknown name, missing macro, bad value."""


@gin.configurable
def run(function: Callable = gin.REQUIRED):
  """What a gin file asks to run (e.g. `run.function = @train`)."""
  return function()


def parse_flags(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="synthetic-pretraining train",
      description="Pre-train, fine-tune or evaluate a T5 model from gin files (T5X style).")
  parser.add_argument("--gin_file", action="append", default=[],
                      help="gin file (repeatable); relative paths also tried under --gin_search_paths")
  parser.add_argument("--gin_bindings", action="append", default=[],
                      help="one gin binding, e.g. \"TRAIN_STEPS = 100\" (repeatable)")
  parser.add_argument("--gin_search_paths", default=DEFAULT_GIN_DIR,
                      help="comma-separated folders searched for gin files and includes")
  args, rest = parser.parse_known_args(list(argv))
  for flag in rest:
    if flag.startswith("--gin.") and "=" in flag:
      key, value = flag[len("--gin."):].split("=", 1)
      args.gin_bindings.append(f"{key} = {value}")
    else:
      parser.error(f"unrecognised argument {flag!r} (gin bindings are written --gin.KEY=VALUE)")
  if not args.gin_file:
    parser.error("at least one --gin_file is required (e.g. --gin_file=runs/pretrain.gin)")
  return args


def parse_gin(gin_files: Sequence[str], bindings: Sequence[str], search_paths: Sequence[str]):
  """Parses files + bindings; errors are re-raised as GinConfigError naming file or binding."""
  _register_configurables()
  _use_search_paths_first(search_paths)
  resolved = []
  for name in gin_files:
    candidates = [name] + [os.path.join(p, name) for p in search_paths]
    found = next((c for c in candidates if os.path.isfile(c)), None)
    if found is None:
      raise GinConfigError(f"gin file {name!r} not found (looked in: {candidates})")
    resolved.append(found)
  try:
    gin.parse_config_files_and_bindings(resolved, list(bindings), finalize_config=False)
  except Exception as e:  # gin raises ValueError/KeyError/SyntaxError; keep its message.
    raise GinConfigError(f"gin configuration error in {resolved} / bindings {list(bindings)}:"
                         f"\n{e}") from e
  missing = unset_required_macros()
  if missing:
    raise GinConfigError(
        f"required gin macro(s) not set: {', '.join(missing)} (gin files {resolved}); set each "
        f"with --gin.NAME=VALUE, e.g. --gin.{missing[0]}=\"'...'\"")


def _use_search_paths_first(search_paths: Sequence[str]) -> None:
  """Makes gin look for files (and `include`s) in our search paths before anything else.

  gin tries the bare relative path first, and its second reader treats the path's folder as a
  Python package: an `include 'runs/finetune.gin'` then breaks (TypeError) whenever the working
  directory holds an unrelated `runs/` folder, e.g. experiment outputs.
  """
  # pylint: disable=protected-access
  prefixes = gin.config._LOCATION_PREFIXES
  for path in reversed([p for p in search_paths if p]):
    if path in prefixes:
      prefixes.remove(path)
    prefixes.insert(0, path)
  readers = gin.config._FILE_READERS
  for i, (reader, exists) in enumerate(readers):
    if not getattr(exists, "_sp_safe", False):
      def safe_exists(path, _exists=exists):
        try:
          return _exists(path)
        except (TypeError, ValueError, ImportError):
          return False
      safe_exists._sp_safe = True
      readers[i] = (reader, safe_exists)


def unset_required_macros() -> list[str]:
  """Macros whose value is still `%gin.REQUIRED` after parsing (T5X's required macros)."""
  missing = []
  for (name, selector), values in gin.config._CONFIG.items():  # pylint: disable=protected-access
    value = values.get("value")
    if selector == "gin.macro" and getattr(value, "scoped_selector", "").startswith(
        "gin.REQUIRED"):
      missing.append(name)
  return sorted(missing)


def _register_configurables() -> None:
  # Importing registers every gin configurable the gin files may name.
  # pylint: disable=g-import-not-at-top,unused-import
  from synthetic_pretraining.model import t5
  from synthetic_pretraining.train import evaluation
  from synthetic_pretraining.train import loop
  from synthetic_pretraining.train import optim
  from synthetic_pretraining.train import partitioning


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_flags(sys.argv[1:] if argv is None else argv)
  search_paths = [p for p in args.gin_search_paths.split(",") if p]
  parse_gin(args.gin_file, args.gin_bindings, search_paths)
  try:
    run()
  except Exception as e:
    message = str(e)
    if "Required bindings" in message or "No values supplied by Gin" in message or (
        "macro" in message.lower() and "gin" in message.lower()):
      raise GinConfigError(f"gin configuration incomplete for {args.gin_file}:\n{message}") from e
    raise
  return 0


def console_main() -> None:
  from synthetic_pretraining.train import checkpoints  # pylint: disable=g-import-not-at-top
  try:
    sys.exit(main())
  except (GinConfigError, checkpoints.IncompatibleCheckpointError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  console_main()
