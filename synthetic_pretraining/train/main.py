"""`python -m synthetic_pretraining.train --gin_file=… --gin.KEY=VALUE`: T5X-like entry point.

Gin files are looked up as given, then under the search paths (default: the gin folder shipped
with the package, `gin/` of the source tree or `synthetic_pretraining/gin_files/` of an installed
copy), so `--gin_file=runs/pretrain.gin` works from any folder. `include` statements are resolved
the same way (search paths first, then the including file's folder, then the working directory)
and each file is read once: a file included again is skipped, so the order in which files that
include the same base are given does not matter. `--gin.KEY=VALUE` adds a binding
(`--gin.TRAIN_STEPS=1000`, `--gin.train.seed=3`); `--gin_bindings` takes one binding per flag.
The gin files choose what runs: they bind `run.function` (train by default; `evaluate` for
eval.gin).

Checks before anything runs: a command-line binding of a macro that no gin file defines
(`--gin.TRAIN_STEP=5`) is an error naming the closest defined macros; so are unknown
configurables or parameters (gin's own check), missing gin files and required macros left unset.

`run_from_gin(gin_files, bindings)` does the same from Python (clearing gin first), so one process
can run several runs one after another; it reads no environment variable.

Environment: this command (`main`) and `synthetic_pretraining.environment` are the only places
environment variables matter; see that module for the list (SP_VOCAB, SP_T5_SPM_PATH,
SP_DATA_DIR, SP_SYNTHETIC_DATA_DIR, SP_NATURAL_CORPUS become the macros VOCABULARY, T5_SPM_PATH,
DOWNSTREAM_DATA_DIR, SYNTHETIC_DATA_DIR, NATURAL_CORPUS unless the command line binds them).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import io
import os
import re
import sys
import tokenize
from typing import Any, Callable, Sequence

import gin
from gin import config_parser

from synthetic_pretraining import environment


def _default_gin_dir() -> str:
  """The gin folder: the installed package's copy, else the source tree's `gin/`."""
  package_copy = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "gin_files")
  if os.path.isdir(package_copy):
    return package_copy
  return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__)))), "gin")


DEFAULT_GIN_DIR = _default_gin_dir()


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


# ---- reading gin files without side effects -----------------------------------------------------
class _Placeholder:
  """Stands for a configurable reference or macro while statements are only being listed."""

  def __init__(self, name: str):
    self.name = name


class _ListingDelegate(config_parser.ParserDelegate):
  """Parses statements without resolving references (nothing is bound or imported)."""

  def configurable_reference(self, scoped_name, evaluate):
    return _Placeholder(scoped_name)

  def macro(self, macro_name):
    return _Placeholder(macro_name)


def _statements(text: str, name: str) -> list:
  stream = io.StringIO(text)
  stream.name = name
  try:
    return list(config_parser.ConfigParser(stream, _ListingDelegate()))
  except (SyntaxError, tokenize.TokenError, ValueError) as e:
    raise GinConfigError(f"gin syntax error in {name}: {e}") from None


@dataclasses.dataclass
class _Chunk:
  """Part of a gin file between include statements, parsed as it stands in that file."""
  path: str
  text: str  # Lines of other parts blanked, so gin's error locations keep the file's line numbers.


def _find(name: str, search_paths: Sequence[str], including_dir: str | None = None) -> str | None:
  if os.path.isabs(name):
    return name if os.path.isfile(name) else None
  candidates = [os.path.join(p, name) for p in search_paths if p]
  if including_dir:
    candidates.append(os.path.join(including_dir, name))
  candidates.append(name)
  return next((os.path.abspath(c) for c in candidates if os.path.isfile(c)), None)


def _expand(path: str, search_paths: Sequence[str], seen: set[str], chunks: list[_Chunk],
            macros: dict[str, str]) -> None:
  """Appends the chunks of `path` (includes expanded in place, each file once) to `chunks`."""
  real = os.path.realpath(path)
  if real in seen:
    return
  seen.add(real)
  with open(path, encoding="utf-8") as f:
    lines = f.read().split("\n")
  start = 0
  for statement in _statements("\n".join(lines), path):
    if isinstance(statement, config_parser.BindingStatement) and not statement.arg_name:
      name = f"{statement.scope}/{statement.selector}" if statement.scope else statement.selector
      macros.setdefault(name, f"{path}:{statement.location.line_num}")
    if isinstance(statement, config_parser.IncludeStatement):
      line = statement.location.line_num  # 1-based line of the include statement.
      chunks.append(_Chunk(path, "\n".join([""] * start + lines[start:line - 1])))
      found = _find(statement.filename, search_paths, os.path.dirname(path))
      if found is None:
        raise GinConfigError(
            f"{path}:{line}: included gin file {statement.filename!r} not found (looked in "
            f"{[p for p in search_paths if p] + [os.path.dirname(path), os.getcwd()]})")
      _expand(found, search_paths, seen, chunks, macros)
      start = line
  chunks.append(_Chunk(path, "\n".join([""] * start + lines[start:])))


def _macro_bindings(bindings: Sequence[str]) -> list[tuple[str, str]]:
  """(macro name, binding) for each binding that sets a macro."""
  found = []
  for binding in bindings:
    for statement in _statements(binding, f"the binding {binding.strip()!r}"):
      if isinstance(statement, config_parser.BindingStatement) and not statement.arg_name:
        name = f"{statement.scope}/{statement.selector}" if statement.scope else statement.selector
        found.append((name, binding))
  return found


def parse_gin(gin_files: Sequence[str], bindings: Sequence[str],
              search_paths: Sequence[str] | None = None, *,
              allow_new_macros: bool = False,
              macro_defaults: dict[str, str] | None = None) -> list[str]:
  """Parses files + bindings after checking them; returns the files read, in order.

  Args:
    gin_files: gin files (as given, or relative to a search path).
    bindings: gin binding statements, applied after the files.
    search_paths: folders for gin files and includes (default: the package's gin folder).
    allow_new_macros: accept bindings of macros no file defines (normally an error: a misspelt
      macro would otherwise be silently ignored).
    macro_defaults: macro -> value (gin text) applied after the files and before `bindings`,
      only for macros the files define (the command's environment defaults).

  Returns:
    The paths of every gin file read (includes expanded, each once).

  Raises:
    GinConfigError: naming the file, binding or macro and what was expected.
  """
  _register_configurables()
  search_paths = [p for p in (search_paths or [DEFAULT_GIN_DIR]) if p]
  chunks: list[_Chunk] = []
  macros: dict[str, str] = {}
  seen: set[str] = set()
  for name in gin_files:
    found = _find(name, search_paths)
    if found is None:
      raise GinConfigError(f"gin file {name!r} not found (looked in: "
                           f"{[name] + [os.path.join(p, name) for p in search_paths]})")
    _expand(found, search_paths, seen, chunks, macros)
  if not allow_new_macros:
    for macro, binding in _macro_bindings(bindings):
      if macro not in macros:
        close = difflib.get_close_matches(macro, list(macros), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise GinConfigError(
            f"binding {binding.strip()!r}: no gin file defines the macro {macro} ({hint}macros "
            f"of these files: {', '.join(sorted(macros)) or 'none'})")
  defaults = [f"{macro} = {value}" for macro, value in (macro_defaults or {}).items()
              if macro in macros]
  try:
    for chunk in chunks:
      stream = io.StringIO(chunk.text)
      stream.name = chunk.path
      gin.parse_config(stream)
    gin.parse_config(defaults + list(bindings))
  except GinConfigError:
    raise
  except Exception as e:  # gin raises ValueError/KeyError/SyntaxError; keep its message.
    raise GinConfigError(f"gin configuration error in {[c.path for c in chunks][-1:] or gin_files}"
                         f" / bindings {list(bindings)}:\n{e}") from e
  _LAST_PARSE_MACROS.clear()
  _LAST_PARSE_MACROS.update(macros)
  missing = unset_required_macros(macros)
  if missing:
    raise GinConfigError(
        f"required gin macro(s) not set: {', '.join(missing)} (gin files {list(gin_files)}); set "
        f"each with --gin.NAME=VALUE, e.g. --gin.{missing[0]}=\"'...'\"")
  return list(dict.fromkeys(c.path for c in chunks))


_LAST_PARSE_MACROS: dict[str, str] = {}


def unset_required_macros(macros: Sequence[str] | None = None) -> list[str]:
  """Those of `macros` whose value is still `%gin.REQUIRED` after parsing (T5X's required).

  Args:
    macros: macro names (default: those defined by the files of the last `parse_gin`).
  """
  macros = _LAST_PARSE_MACROS if macros is None else macros
  missing = []
  for name in macros:
    try:
      value = gin.query_parameter(f"{name}/gin.macro.value")
    except ValueError:
      continue
    if str(getattr(value, "selector", "")).startswith("gin.REQUIRED") or str(
        getattr(value, "scoped_selector", "")).startswith("gin.REQUIRED"):
      missing.append(name)
  return sorted(missing)


def _register_configurables() -> None:
  # Importing registers every gin configurable the gin files may name.
  # pylint: disable=g-import-not-at-top,unused-import
  from synthetic_pretraining.data import vocab
  from synthetic_pretraining.model import t5
  from synthetic_pretraining.train import evaluation
  from synthetic_pretraining.train import loop
  from synthetic_pretraining.train import optim
  from synthetic_pretraining.train import partitioning
  from synthetic_pretraining.train import trainer


def _run_configured() -> Any:
  try:
    return run()
  except Exception as e:
    message = str(e)
    if "Required bindings" in message or "No values supplied by Gin" in message:
      raise GinConfigError(f"gin configuration incomplete:\n{message}") from e
    raise


def run_from_gin(gin_files: Sequence[str], bindings: Sequence[str] = (),
                 search_paths: Sequence[str] | None = None) -> Any:
  """Clears gin, parses `gin_files` + `bindings` with every check, runs `run.function`.

  For a process that runs several runs one after another (each call starts from an empty gin
  configuration; the task registry is re-registered for each run's vocabulary by the loop).
  No environment variable is read.

  Args:
    gin_files: e.g. ["models/tiny.gin", "runs/pretrain.gin"].
    bindings: e.g. ["MIXTURE_OR_TASK_NAME = 'set'", "VOCABULARY = 'byte'"].
    search_paths: folders for gin files and includes (default: the package's gin folder).

  Returns:
    What the configured function returns (train: the final validation metrics).
  """
  gin.clear_config()
  parse_gin(gin_files, bindings, search_paths)
  return _run_configured()


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_flags(sys.argv[1:] if argv is None else argv)
  search_paths = [p for p in args.gin_search_paths.split(",") if p]
  gin.clear_config()
  parse_gin(args.gin_file, args.gin_bindings, search_paths,
            macro_defaults=environment.gin_macro_defaults())
  with gin.unlock_config():
    for key, value in environment.distributed_settings().items():
      gin.bind_parameter(f"maybe_initialize_distributed.{key}", value)
  _run_configured()
  return 0


def console_main() -> None:
  from synthetic_pretraining.train import checkpoints  # pylint: disable=g-import-not-at-top
  try:
    sys.exit(main())
  except (GinConfigError, checkpoints.IncompatibleCheckpointError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  console_main()
