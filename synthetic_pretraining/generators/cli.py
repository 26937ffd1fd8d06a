"""`synthetic-pretraining generate`: write a synthetic task's examples in the release's file format.

    synthetic-pretraining generate --task set --num_examples 1020000 --out data/ [--seed 0]
        [--vocab byte|t5|PATH.model] [--num_train 1000000] [--num_valid 10000] [--processes 4]

Writes `<out>/<task>/train.txt` and `valid.txt` (the layout the SeqIO file source reads), as the
release did (SPEC §1.4): examples 0..N-1 of the deterministic stream (seed, shard), lines
`str(inputs)\\tstr(outputs)`, duplicates by input removed (first occurrence kept), then
train = the first min(num_train, kept) lines and valid = the last min(num_valid, kept) lines (the
two overlap when fewer than num_train + num_valid lines survive; a log line says so).

The output depends only on (task, knobs, vocabulary, seed, shard, N): the processes compute
contiguous index ranges of the one stream and the parent writes them in index order, so the files
are identical for any --processes. Files appear atomically (temp file in the same folder, then
rename); an error or Ctrl-C leaves no partial train.txt/valid.txt.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import hashlib
import logging
import multiprocessing
import os
import pathlib
import re
import sys
from typing import Any, Iterable, Iterator, Sequence

from synthetic_pretraining.generators import base
from synthetic_pretraining.generators import malloc_tuning
from synthetic_pretraining.generators import registry
# DataFileError and read_data_file are re-exported: reading back what `generate` writes.
from synthetic_pretraining.generators.lines import DataFileError, format_line, read_data_file
from synthetic_pretraining.vocab_spec import T5_SPM_PATH, VocabSpec

__all__ = ["DataFileError", "GenerateStats", "TaskRecipe", "VocabLoadError", "load_vocab", "main",
           "read_data_file", "write_task_files"]

log = logging.getLogger("synthetic_pretraining.generate")

DEFAULT_CHUNK = 64 * base.BLOCK_SIZE  # Examples per work unit handed to a process.


class VocabLoadError(RuntimeError):
  """The requested vocabulary could not be loaded (the message says why and what to do)."""


def load_vocab(vocab: str) -> VocabSpec:
  """'byte' (offline), 't5' (the release's SentencePiece model on GCS) or a local .model path."""
  if vocab == "byte":
    return VocabSpec.byte()
  if vocab == "t5":
    try:
      return VocabSpec.t5()
    except Exception as e:  # pylint: disable=broad-except
      raise VocabLoadError(
          f"could not load the T5 SentencePiece model {T5_SPM_PATH} ({type(e).__name__}: "
          f"{str(e).splitlines()[0] if str(e) else ''}). It needs access to Google Cloud "
          "Storage; offline, pass a local copy with --vocab PATH/sentencepiece.model, or use "
          "--vocab byte.") from e
  path = pathlib.Path(vocab)
  if not path.is_file():
    raise VocabLoadError(f"--vocab {vocab!r}: expected 'byte', 't5' or the path of a SentencePiece "
                         ".model file, and no such file exists")
  try:
    return VocabSpec.from_sentencepiece(str(path))
  except Exception as e:  # pylint: disable=broad-except
    raise VocabLoadError(f"--vocab {vocab}: not a readable SentencePiece model ({e})") from e


@dataclasses.dataclass(frozen=True)
class TaskRecipe:
  """What a worker process needs to rebuild the task (tasks hold unpicklable encoders)."""

  task: str
  vocab: str
  knobs: tuple[tuple[str, Any], ...] = ()

  def build(self, spec: VocabSpec | None = None) -> base.SyntheticTask:
    return registry.get_task(self.task, spec or load_vocab(self.vocab), **dict(self.knobs))


@dataclasses.dataclass
class GenerateStats:
  generated: int
  kept: int
  train_lines: int
  valid_lines: int
  overlap: int
  train_path: pathlib.Path
  valid_path: pathlib.Path


# -- producing lines -------------------------------------------------------------------------------
_worker_task: base.SyntheticTask | None = None


def _init_worker(recipe: TaskRecipe) -> None:
  global _worker_task
  malloc_tuning.keep_freed_memory()
  _worker_task = recipe.build()


def format_examples(task: base.SyntheticTask, seed: int, shard: int, start: int,
                    stop: int) -> list[str]:
  """Lines for examples start..stop-1 of the (seed, shard) stream."""
  return [format_line(inputs, outputs)
          for inputs, outputs in base.iter_examples(task, seed, shard, start, stop)]


def _worker_chunk(args: tuple[int, int, int, int]) -> list[str]:
  return format_examples(_worker_task, *args)


def _chunks(num_examples: int, seed: int, shard: int, size: int) -> list[tuple[int, int, int, int]]:
  return [(seed, shard, start, min(start + size, num_examples))
          for start in range(0, num_examples, size)]


def produce_lines(task: base.SyntheticTask, recipe: TaskRecipe | None, num_examples: int, seed: int,
                  shard: int = 0, processes: int = 1,
                  chunk_size: int = DEFAULT_CHUNK) -> Iterator[list[str]]:
  """Chunks of lines in index order, computed here or by `processes` worker processes."""
  chunks = _chunks(num_examples, seed, shard, chunk_size)
  if processes <= 1 or len(chunks) <= 1:
    for chunk in chunks:
      yield format_examples(task, *chunk)
    return
  if recipe is None:
    raise ValueError("several processes need a TaskRecipe to rebuild the task")
  ctx = multiprocessing.get_context("spawn")
  with ctx.Pool(processes, initializer=_init_worker, initargs=(recipe,)) as pool:
    yield from pool.imap(_worker_chunk, chunks)  # imap keeps the chunks' order.


# -- writing files ---------------------------------------------------------------------------------
def _temp_path(final: pathlib.Path) -> pathlib.Path:
  return final.with_name(f".{final.name}.{os.getpid()}.tmp")


def _make_dirs(path: pathlib.Path) -> list[pathlib.Path]:
  """mkdir -p; returns the folders it created, outermost first (to remove them on failure)."""
  missing = []
  for folder in [path, *path.parents]:
    if folder.exists():
      break
    missing.append(folder)
  path.mkdir(parents=True, exist_ok=True)
  return list(reversed(missing))


_TEMP_NAME = re.compile(r"^\.(?:deduped|train\.txt|valid\.txt)\.(\d+)\.tmp$")


def _process_alive(pid: int) -> bool:
  if pid == os.getpid():
    return False  # Ours by name, so left by an earlier process that had our id: stale.
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except (PermissionError, OSError):
    return True  # Exists (another user's) or cannot tell: leave it alone.
  return True


def remove_stale_temp_files(task_dir: pathlib.Path) -> list[pathlib.Path]:
  """Deletes temp files (`.deduped.<pid>.tmp`, `.train.txt.<pid>.tmp`, …) of `generate` runs
  whose process no longer exists, e.g. after a SIGKILL; files of live runs are kept."""
  removed = []
  for path in sorted(task_dir.iterdir()) if task_dir.is_dir() else []:
    match = _TEMP_NAME.match(path.name)
    if match and path.is_file() and not _process_alive(int(match.group(1))):
      size = path.stat().st_size
      path.unlink(missing_ok=True)
      removed.append(path)
      log.warning("removed %s (%d bytes), left by an interrupted generate run (process %s)",
                  path, size, match.group(1))
  return removed


def _dedup_into(chunks: Iterable[list[str]], path: pathlib.Path, progress) -> tuple[int, int]:
  """Writes lines whose input part (whole line if inputs are empty) was not seen before;
  returns (generated, kept)."""
  seen: set[bytes] = set()
  generated = kept = 0
  with open(path, "w", encoding="utf-8") as f:
    for lines in chunks:
      out = []
      for line in lines:
        inputs = line[:line.index("\t")]
        # Targets-only tasks (nesting_language: inputs "[]") are deduplicated on the whole line.
        key = hashlib.blake2b((line if inputs == "[]" else inputs).encode(),
                              digest_size=16).digest()
        if key not in seen:
          seen.add(key)
          out.append(line)
      f.write("".join(line + "\n" for line in out))
      generated += len(lines)
      kept += len(out)
      progress.update(len(lines))
  return generated, kept


def _split_into(all_path: pathlib.Path, kept: int, train_path: pathlib.Path, num_train: int,
                valid_path: pathlib.Path, num_valid: int) -> tuple[int, int]:
  """train = head -n num_train, valid = tail -n num_valid of the deduplicated lines."""
  n_train, n_valid = min(num_train, kept), min(num_valid, kept)
  first_valid = kept - n_valid
  with open(all_path, encoding="utf-8") as src, \
      open(train_path, "w", encoding="utf-8") as train, \
      open(valid_path, "w", encoding="utf-8") as valid:
    for i, line in enumerate(src):
      if i < n_train:
        train.write(line)
      if i >= first_valid:
        valid.write(line)
  return n_train, n_valid


def write_task_files(task: base.SyntheticTask, out_dir: str | os.PathLike, num_examples: int,
                     seed: int = 0, shard: int = 0, num_train: int = 1_000_000,
                     num_valid: int = 10_000, processes: int = 1,
                     recipe: TaskRecipe | None = None, chunk_size: int = DEFAULT_CHUNK,
                     show_progress: bool | None = None) -> GenerateStats:
  """Generates, deduplicates and splits; writes <out_dir>/<task.name>/{train,valid}.txt."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  if num_examples < 0 or num_train < 0 or num_valid < 0:
    raise ValueError("num_examples, num_train and num_valid must be >= 0")
  task_dir = pathlib.Path(out_dir) / task.name
  created = _make_dirs(task_dir)
  train_path, valid_path = task_dir / "train.txt", task_dir / "valid.txt"
  remove_stale_temp_files(task_dir)
  all_tmp = task_dir / f".deduped.{os.getpid()}.tmp"
  train_tmp, valid_tmp = _temp_path(train_path), _temp_path(valid_path)
  done = False
  try:
    with tqdm(total=num_examples, unit="ex", desc=f"generate {task.name}",
              disable=None if show_progress is None else not show_progress) as progress:
      chunks = produce_lines(task, recipe, num_examples, seed, shard, processes, chunk_size)
      generated, kept = _dedup_into(chunks, all_tmp, progress)
    n_train, n_valid = _split_into(all_tmp, kept, train_tmp, num_train, valid_tmp, num_valid)
    os.replace(valid_tmp, valid_path)
    os.replace(train_tmp, train_path)
    done = True
  finally:
    for tmp in (all_tmp, train_tmp, valid_tmp):
      tmp.unlink(missing_ok=True)
    if not done:  # No skeleton folders from a failed or interrupted run.
      for folder in reversed(created):
        try:
          folder.rmdir()
        except OSError:
          break
  overlap = max(0, n_train + n_valid - kept)
  log.info("%s: generated %d examples, removed %d duplicate inputs, kept %d", task.name, generated,
           generated - kept, kept)
  log.info("%s: wrote %d train lines to %s and %d valid lines to %s", task.name, n_train,
           train_path, n_valid, valid_path)
  if overlap:
    log.warning("%s: train and valid overlap by %d lines (only %d lines survived deduplication, "
                "fewer than num_train + num_valid = %d)", task.name, overlap, kept,
                num_train + num_valid)
  return GenerateStats(generated, kept, n_train, n_valid, overlap, train_path, valid_path)


# -- command line ----------------------------------------------------------------------------------
def _parse_knob(text: str) -> tuple[str, Any]:
  if "=" not in text:
    raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
  key, value = text.split("=", 1)
  try:
    return key.strip(), ast.literal_eval(value)
  except (ValueError, SyntaxError):
    return key.strip(), value  # A bare string, e.g. symbols=top_of_base.


def _parse_range(text: str) -> tuple[int, int]:
  try:
    lo, hi = (int(v) for v in text.split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected MIN,MAX (two integers), got {text!r}") from None
  return lo, hi


def _int_at_least(minimum: int):
  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
    if value < minimum:
      raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
    return value
  parse.__name__ = f"integer >= {minimum}"
  return parse


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="synthetic-pretraining generate",
      description="Write a synthetic task's examples as <out>/<task>/{train,valid}.txt in the "
                  "release's '[ids]\\t[ids]' format.")
  parser.add_argument("--task", required=True,
                      help=f"paper id (or release code name): {', '.join(registry.TASK_NAMES)}")
  parser.add_argument("--num_examples", type=_int_at_least(1), required=True,
                      help="examples to generate before deduplication (release: 1020000)")
  parser.add_argument("--out", required=True, help="output folder; files go to OUT/<task>/")
  parser.add_argument("--seed", type=_int_at_least(0), default=0)
  parser.add_argument("--shard", type=_int_at_least(0), default=0,
                      help="which stream of the seed to use")
  parser.add_argument("--vocab", default="byte",
                      help="'byte' (offline default), 't5' (gs:// T5 model) or PATH.model")
  parser.add_argument("--num_train", type=_int_at_least(0), default=1_000_000)
  parser.add_argument("--num_valid", type=_int_at_least(0), default=10_000)
  parser.add_argument("--processes", type=_int_at_least(1), default=1)
  parser.add_argument("--length_range", type=_parse_range, default=None,
                      help="MIN,MAX sequence length (task default if omitted)")
  parser.add_argument("--knob", type=_parse_knob, action="append", default=[],
                      metavar="KEY=VALUE",
                      help="sampler knob passed to the task constructor (repeatable), e.g. "
                           "--knob p_occurrence=0.5 --knob 'alphabet=range(3,13)'")
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  malloc_tuning.keep_freed_memory()
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
  knobs = dict(args.knob)
  if args.length_range is not None:
    knobs["length_range"] = args.length_range
  if isinstance(knobs.get("alphabet"), str) and knobs["alphabet"].startswith("range("):
    knobs["alphabet"] = list(range(*_parse_range(knobs["alphabet"][6:-1])))
  try:
    name = registry.canonical_name(args.task)
    spec = load_vocab(args.vocab)
    recipe = TaskRecipe(name, args.vocab, tuple(sorted(knobs.items())))
    task = recipe.build(spec)
  except (ValueError, TypeError, VocabLoadError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  try:
    write_task_files(task, args.out, args.num_examples, seed=args.seed, shard=args.shard,
                     num_train=args.num_train, num_valid=args.num_valid, processes=args.processes,
                     recipe=recipe)
  except OSError as e:  # Unwritable --out, a file where a folder should be, a full disk, ...
    where = f"{e.filename}: " if e.filename else ""
    print(f"error: cannot write the output under --out {args.out}: {where}"
          f"{e.strerror or e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
