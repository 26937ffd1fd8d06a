"""The release's data-file format: one example per line, `str(input_ids)\\tstr(output_ids)`.

For example `[2405, 32099, 29246]\\t[29246]`. This is what the SeqIO file source reads
(`<data_dir>/<task>/{train,valid}.txt`) and what `synthetic-pretraining generate` writes.
"""

from __future__ import annotations

import os
from typing import Iterator, Sequence

LINE_FORMAT = "'[id, id, ...]<TAB>[id, id, ...]'"


class DataFileError(ValueError):
  """A malformed line in a data file (the message names file:line and what was expected)."""


def format_line(inputs: Sequence[int], outputs: Sequence[int]) -> str:
  """`str(list)\\tstr(list)` exactly as the release writes it (no newline); lists or arrays."""
  inputs = inputs.tolist() if hasattr(inputs, "tolist") else [int(t) for t in inputs]
  outputs = outputs.tolist() if hasattr(outputs, "tolist") else [int(t) for t in outputs]
  return f"{inputs}\t{outputs}"


def _parse_ids(field: str) -> list[int]:
  if len(field) < 2 or field[0] != "[" or field[-1] != "]":
    raise ValueError(f"expected a bracketed id list, got {field[:40]!r}")
  body = field[1:-1]
  if not body:
    return []
  try:
    return [int(x) for x in body.split(", ")]
  except ValueError:
    raise ValueError(f"expected integers separated by ', ' inside the brackets, got "
                     f"{body[:40]!r}") from None


def parse_line(line: str) -> tuple[list[int], list[int]]:
  """(input ids, output ids) of one `[ids]\\t[ids]` line (a trailing newline is allowed)."""
  fields = line.rstrip("\r\n").split("\t")
  if len(fields) != 2:
    raise ValueError(f"expected 2 tab-separated fields {LINE_FORMAT}, got {len(fields)}")
  return _parse_ids(fields[0]), _parse_ids(fields[1])


def read_data_file(path: str | os.PathLike) -> Iterator[tuple[list[int], list[int]]]:
  """Yields the examples of a data file; a malformed line raises DataFileError(file:line: …)."""
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, start=1):
      try:
        yield parse_line(line)
      except ValueError as e:
        raise DataFileError(f"{os.fspath(path)}:{lineno}: {e} (expected {LINE_FORMAT})") from None

