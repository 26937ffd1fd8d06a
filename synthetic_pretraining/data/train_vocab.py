"""`synthetic-pretraining vocab`: train a SentencePiece unigram model offline.

    synthetic-pretraining vocab --out PATH.model [--vocab_size N] [--input FILE …]
        [--data_dir OUT] [--character_coverage C] [--byte_fallback] [--max_sentences N]

Sentences come from the `--input` files and, with `--data_dir`, from every prepared downstream
split `OUT/<task>/*.tsv` (sorted). A file ending in `.tsv` contributes its first two TAB-separated
fields (input and target; the squad answers column is skipped); any other file contributes each
non-empty line (`.gz` files are decompressed). Special ids follow T5: pad 0, eos 1, unk 2, no
bos. `hard_vocab_limit=False`, so `--vocab_size` is an upper bound a small corpus may not reach
(seqio's `SentencePieceVocabulary(path, extra_ids=100)` then adds sentinels above the model).

Deterministic: sentences are fed in a fixed order (no sampling/shuffling of the input) to a
single training thread, so the same inputs and flags give a byte-identical model. The model
(and a `.vocab` listing `piece<TAB>score` per id) is written to a temp file and renamed.
"""

from __future__ import annotations

import argparse
import io
import os
import pathlib
import sys
from typing import Iterable, Iterator, Sequence

import sentencepiece as spm

from synthetic_pretraining.data.downstream import common

DEFAULT_VOCAB_SIZE = 32000


def iter_sentences(paths: Iterable[pathlib.Path], max_sentence_chars: int) -> Iterator[str]:
  """Training sentences of the given files, in order (see module docstring)."""
  for path in paths:
    is_tsv = path.name.endswith(".tsv") or path.name.endswith(".tsv.gz")
    for line in common.read_lines(path):
      fields = line.split("\t")[:2] if is_tsv else [line]
      for text in fields:
        text = text.strip()
        if text:
          yield text[:max_sentence_chars]


def prepared_tsvs(data_dir: pathlib.Path) -> list[pathlib.Path]:
  """Every `data_dir/<task>/<split>.tsv`, sorted; an error when there is none."""
  files = sorted(p for p in data_dir.glob("*/*.tsv") if not p.parent.name.startswith("_"))
  if not files:
    raise FileNotFoundError(f"no prepared downstream splits (<task>/<split>.tsv) under {data_dir}; "
                            "run `synthetic-pretraining prepare` first")
  return files


def train(out: str | os.PathLike, inputs: Sequence[str | os.PathLike],
          vocab_size: int = DEFAULT_VOCAB_SIZE, character_coverage: float = 1.0,
          byte_fallback: bool = False, max_sentences: int = 0,
          max_sentence_chars: int = 4192) -> pathlib.Path:
  """Trains a unigram SentencePiece model on `inputs` and writes it atomically to `out`.

  Args:
    out: destination `.model` path; `<out without .model>.vocab` is written beside it.
    inputs: text or TSV files (see module docstring).
    vocab_size: upper bound on the number of pieces (soft limit).
    character_coverage: fraction of characters covered (1.0 keeps every character, so code and
      SMILES symbols such as `{` never become unk).
    byte_fallback: encode characters outside the vocabulary as UTF-8 byte pieces.
    max_sentences: use only the first N sentences (0 = all), in input order.
    max_sentence_chars: longer sentences are cut to this many characters.

  Returns:
    The model path.
  """
  paths = [pathlib.Path(p).expanduser() for p in inputs]
  if not paths:
    raise ValueError("no input files given")
  for p in paths:
    if not p.is_file():
      raise FileNotFoundError(f"vocabulary input file {p} does not exist")
  sentences = iter_sentences(paths, max_sentence_chars)
  if max_sentences:
    sentences = (s for i, s in zip(range(max_sentences), sentences))
  sentences = list(sentences)
  if not sentences:
    raise ValueError(f"the input files contain no text: {', '.join(map(str, paths))}")

  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(sentences), model_writer=model, model_type="unigram",
      vocab_size=vocab_size, hard_vocab_limit=False, character_coverage=character_coverage,
      byte_fallback=byte_fallback, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
      input_sentence_size=0, shuffle_input_sentence=False, num_threads=1,
      max_sentence_length=max_sentence_chars * 4, minloglevel=2)
  data = model.getvalue()
  processor = spm.SentencePieceProcessor(model_proto=data)
  vocab_lines = [f"{processor.id_to_piece(i)}\t{processor.get_score(i)}\n"
                 for i in range(processor.get_piece_size())]

  out_path = pathlib.Path(out).expanduser()
  vocab_name = (out_path.stem if out_path.suffix == ".model" else out_path.name) + ".vocab"
  out_path.parent.mkdir(parents=True, exist_ok=True)
  common.write_files_atomically(out_path.parent, {out_path.name: data, vocab_name: vocab_lines})
  return out_path


def main(argv: Sequence[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="synthetic-pretraining vocab",
                              description="Train an offline SentencePiece unigram vocabulary.")
  p.add_argument("--out", required=True, help="output PATH.model")
  p.add_argument("--vocab_size", type=int, default=DEFAULT_VOCAB_SIZE)
  p.add_argument("--input", nargs="+", default=[], metavar="FILE",
                 help="text files (one sentence per line) or prepared .tsv splits")
  p.add_argument("--data_dir", default=None,
                 help="also use every prepared split <data_dir>/<task>/*.tsv")
  p.add_argument("--character_coverage", type=float, default=1.0)
  p.add_argument("--byte_fallback", action="store_true")
  p.add_argument("--max_sentences", type=int, default=0, help="0 = all sentences")
  args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
  inputs = [pathlib.Path(f) for f in args.input]
  try:
    if args.data_dir:
      inputs += prepared_tsvs(pathlib.Path(args.data_dir).expanduser())
    if not inputs:
      p.error("give --input FILE … and/or --data_dir")
    path = train(args.out, inputs, args.vocab_size, args.character_coverage, args.byte_fallback,
                 args.max_sentences)
  except (OSError, ValueError, RuntimeError) as e:
    print(f"vocab: ERROR: {e}", file=sys.stderr)
    return 2  # Bad input (missing file, bad size, …): status 2 like every command.
  size = spm.SentencePieceProcessor(model_file=str(path)).get_piece_size()
  print(f"wrote {path} ({size} pieces) from {len(inputs)} file(s)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
