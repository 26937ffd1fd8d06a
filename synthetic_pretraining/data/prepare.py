"""`synthetic-pretraining prepare`: official downstream raw files → `input<TAB>target` splits.

    synthetic-pretraining prepare --task T [--from DIR] [--data_dir OUT] [options]

T is one of cnndm_10k, code_translation, mtop, retrosynthesis, squad, webqsp, or `all`.

Raw files come from the first of:
  1. `--from DIR`: `DIR/<raw folder>` when that folder exists (so `--from ../shared/data` serves
     every task), else DIR itself;
  2. `$SP_RAW_DATA_DIR/<raw folder>` when it exists;
  3. a download from the official public location into `OUT/_downloads/<raw folder>` (needs
     internet; a failure names the URL and suggests --from).
Raw folders: cnn_dailymail, code_translation, mtop, retrosynthesis, squad, webqsp. Files with a
known official sha256 are verified (`--skip_checksums` accepts modified copies).

Output: `OUT/<task>/{train,validation,test}.tsv` (squad: train and validation only) and
`OUT/<task>/prepare_info.json` (counts, options, raw sha256s). OUT defaults to `$SP_DATA_DIR`, else
`~/synthetic_pretraining_data/finetuning` — the directory the seqio tasks read. Lines are
`input<TAB>target`; squad adds a third field, the JSON list of all gold answers. TAB/LF/CR inside
a field are replaced by one space (see `downstream/common.py`). Files are written to temp names
and renamed only when every split converted, so an error leaves no half-written output; the
conversion is deterministic, so re-running gives byte-identical files.

Malformed raw records (e.g. an MTOP line without 8 TAB-separated columns) are counted, skipped and
reported, with the first few positions (the release dropped such lines silently); `--strict`
stops at the first one instead. Task-specific choices and their defaults are documented in each
converter module of `synthetic_pretraining/data/downstream/` and summarised by `--help`.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import os
import pathlib
import sys
from typing import Callable, Sequence

from synthetic_pretraining.data import downstream
from synthetic_pretraining.data.downstream import common

TASK_CHOICES = downstream.TASK_NAMES + ("all",)


def resolve_raw_dir(converter: downstream.Converter,
                    from_dir: str | os.PathLike | None) -> pathlib.Path | None:
  """The local raw folder for a task, or None when the files must be downloaded."""
  if from_dir is not None:
    root = pathlib.Path(from_dir).expanduser()
    nested = root / converter.raw_folder
    return nested if nested.is_dir() else root
  from synthetic_pretraining import environment  # pylint: disable=g-import-not-at-top
  env_root = environment.get(environment.RAW_DATA_DIR)
  if env_root:
    nested = pathlib.Path(env_root).expanduser() / converter.raw_folder
    if nested.is_dir():
      return nested
  return None


def prepare_task(task: str, *, data_dir: str | os.PathLike,
                 from_dir: str | os.PathLike | None = None,
                 options: downstream.PrepareOptions = downstream.PrepareOptions(),
                 log: Callable[[str], None] = print) -> dict:
  """Converts one task's raw files into `data_dir/<task>/*.tsv`; returns the written info dict.

  Raises:
    PrepareError: a raw file is missing, has the wrong checksum or (strict) a malformed record,
      or a download failed.
  """
  converter = downstream.CONVERTERS[task]
  out_root = pathlib.Path(data_dir).expanduser()
  raw_dir = resolve_raw_dir(converter, from_dir)
  if raw_dir is None:
    download_dir = out_root / common.DOWNLOAD_SUBDIR / converter.raw_folder
    log(f"[{task}] no local raw folder (--from / ${common.RAW_DATA_DIR_ENV}); downloading the "
        f"official files into {download_dir}")
    raw_dir = converter.fetch(download_dir)
  paths = converter.locate(raw_dir)

  specs = converter.checksummed()
  raw_info, verified = {}, []
  for name, path in sorted(paths.items()):
    spec = specs.get(name)
    if path.is_dir():
      raw_info[name] = {"file": path.name + "/", "sha256": None}
      continue
    if spec is not None and spec.sha256 is not None and not options.skip_checksums:
      digest = common.verify(path, spec)
      verified.append(path.name)
    else:
      digest = common.sha256_of(path)
    raw_info[name] = {"file": path.name, "sha256": digest}
  if options.skip_checksums:
    checked = " (checksums not verified: --skip_checksums)"
  elif verified:
    checked = f" (sha256 verified: {', '.join(verified)})"
  else:
    checked = " (no official sha256 known; not verified)"
  log(f"[{task}] raw files from {raw_dir}{checked}")

  bad = common.BadLines(strict=options.strict)
  clean = common.FieldCleaner()
  try:
    converted = converter.convert(paths, options, bad, clean)
  except UnicodeDecodeError as e:
    raise common.PrepareError(_undecodable_line(paths.values(), e)) from None
  if set(converted.splits) != set(converter.splits):
    raise AssertionError(f"{task}: converter returned splits {sorted(converted.splits)}")
  for split, rows in converted.splits.items():
    if not rows:
      raise common.PrepareError(f"[{task}] split {split!r} is empty after conversion of {raw_dir} "
                                f"({bad.summary()})")

  out_dir = out_root / task
  files = {f"{split}.tsv": common.tsv_lines(converted.splits[split], converter.num_fields,
                                            str(out_dir / f"{split}.tsv"))
           for split in converter.splits}
  info = {
      "task": task,
      "fields": (["input", "target", "answers_json"] if converter.num_fields == 3
                 else ["input", "target"]),
      "splits": {split: len(converted.splits[split]) for split in converter.splits},
      "raw_files": raw_info,
      "malformed_records_skipped": bad.count,
      "malformed_examples": bad.examples,
      "fields_with_tab_or_newline_replaced": clean.changed,
      "options": dataclasses.asdict(options),
      "notes": converted.notes,
  }
  files[common.INFO_FILE] = common.json_bytes(info)
  created = [d for d in (out_dir, *out_dir.parents) if not d.exists()]
  try:
    common.write_files_atomically(out_dir, files)
  except BaseException:
    for folder in created:  # Innermost first; no skeleton folders from a failed write.
      try:
        folder.rmdir()
      except OSError:
        break
    raise

  counts = "  ".join(f"{s}: {n:,}" for s, n in info["splits"].items())
  log(f"[{task}] {counts}  → {out_dir}")
  log(f"[{task}] {bad.summary()}")
  if clean.changed:
    log(f"[{task}] {clean.changed:,} field(s) had TAB/LF/CR replaced by a space")
  for key, value in converted.notes.items():
    log(f"[{task}] {key}: {value}")
  return info


def _undecodable_line(paths, error: UnicodeDecodeError) -> str:
  """'FILE:LINE: …' for the first raw line that is not UTF-8 (the codec's error names neither)."""
  for path in sorted(p for p in paths if p.is_file()):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
      for line_number, line in enumerate(f, 1):
        try:
          line.decode("utf-8")
        except UnicodeDecodeError as e:
          return (f"{path}:{line_number}: not valid UTF-8 (byte 0x{line[e.start]:02x} at column "
                  f"{e.start + 1}); expected UTF-8 text")
  return f"a raw file is not valid UTF-8 ({error})"


def build_parser() -> argparse.ArgumentParser:
  """The `prepare` command's argument parser."""
  defaults = downstream.PrepareOptions()
  p = argparse.ArgumentParser(
      prog="synthetic-pretraining prepare",
      description="Convert official downstream raw files into input<TAB>target splits.")
  p.add_argument("--task", required=True, choices=TASK_CHOICES)
  p.add_argument("--from", dest="from_dir", metavar="DIR",
                 help="local folder with the official raw files (or their parent folder); "
                      f"default ${common.RAW_DATA_DIR_ENV}/<folder>, else download")
  p.add_argument("--data_dir", metavar="OUT", default=None,
                 help=f"output root (default ${common.DATA_DIR_ENV} or {common.DEFAULT_DATA_DIR})")
  p.add_argument("--strict", action="store_true",
                 help="stop at the first malformed raw record instead of counting/skipping it")
  p.add_argument("--skip_checksums", action="store_true",
                 help="accept raw files whose sha256 differs from the official one")
  p.add_argument("--seed", type=int, default=defaults.seed,
                 help="seed of the cnndm_10k train subset and the webqsp validation split")
  g = p.add_argument_group("cnndm_10k")
  g.add_argument("--cnndm_train_size", type=int, default=defaults.cnndm_train_size)
  g.add_argument("--cnndm_lowercase", action=argparse.BooleanOptionalAction,
                 default=defaults.cnndm_lowercase,
                 help="lowercase articles and highlights (paper: Krishna et al.'s lowercased data)")
  g.add_argument("--cnndm_highlight_joiner", default=defaults.cnndm_highlight_joiner,
                 help="string joining highlight sentences (default: one space)")
  g.add_argument("--cnndm_prefix", default=defaults.cnndm_prefix,
                 help="text before each article, e.g. 'summarize: ' (default none)")
  g = p.add_argument_group("retrosynthesis")
  g.add_argument("--retro_keep_class", action="store_true",
                 help="keep the '<RX_k>' reaction-class token before the product (default: drop)")
  g.add_argument("--retro_keep_spaces", action="store_true",
                 help="keep one-character-per-token spacing (default: plain SMILES)")
  g = p.add_argument_group("webqsp")
  g.add_argument("--webqsp_valid_size", type=int, default=defaults.webqsp_valid_size,
                 help="examples moved from train to validation (seeded by --seed)")
  g.add_argument("--webqsp_input", choices=("unifiedskg", "question"),
                 default=defaults.webqsp_input)
  g = p.add_argument_group("mtop")
  g.add_argument("--mtop_input", choices=("tokens", "utterance"), default=defaults.mtop_input)
  return p


def main(argv: Sequence[str] | None = None) -> int:
  args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
  option_names = {f.name for f in dataclasses.fields(downstream.PrepareOptions)}
  options = downstream.PrepareOptions(
      **{k: v for k, v in vars(args).items() if k in option_names})
  data_dir = args.data_dir or common.default_data_dir()
  tasks = downstream.TASK_NAMES if args.task == "all" else (args.task,)
  failed = []
  for task in tasks:
    try:
      prepare_task(task, data_dir=data_dir, from_dir=args.from_dir, options=options)
    except (common.PrepareError, ValueError, OSError) as e:
      message = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.strerror else e
      print(f"[{task}] ERROR: {message}", file=sys.stderr)
      failed.append(task)
  if failed:
    print(f"prepare failed for: {', '.join(failed)}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
