"""Pieces shared by the downstream converters of `synthetic-pretraining prepare`.

Raw-file specifications with their official locations and sha256 sums, checksum verification,
downloads, bad-line accounting, field cleaning and atomic writing of `input<TAB>target` files.

TSV contract (read by `synthetic_pretraining.data.downstream_tasks`): one example per line,
fields separated by a single TAB, lines ended by "\\n", UTF-8. Fields never contain TAB, LF or CR:
`clean_field` replaces each of them (a CRLF pair counts as one) by a single space. Models with
T5's SentencePiece normalisation see whitespace runs as one space anyway, so this loses nothing a
model could use; the number of changed fields is reported. Read these files with
`str.split("\\n")`, not `str.splitlines()` (the latter also splits on U+2028, form feed, …, which
may legitimately occur inside a field).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import pathlib
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from typing import Iterable, Iterator, Sequence

DATA_DIR_ENV = "SP_DATA_DIR"
RAW_DATA_DIR_ENV = "SP_RAW_DATA_DIR"
DEFAULT_DATA_DIR = "~/synthetic_pretraining_data/finetuning"
DOWNLOAD_SUBDIR = "_downloads"
INFO_FILE = "prepare_info.json"

Row = tuple[str, ...]


def default_data_dir() -> str:
  """`prepare`'s default output: `$SP_DATA_DIR` (read by `synthetic_pretraining.environment`),
  else `~/synthetic_pretraining_data/finetuning` (user-expanded)."""
  from synthetic_pretraining import environment  # pylint: disable=g-import-not-at-top
  return os.path.expanduser(environment.get(environment.DATA_DIR) or DEFAULT_DATA_DIR)


class PrepareError(Exception):
  """Raw input is missing, corrupt or malformed; the message names the file and the expectation."""


@dataclasses.dataclass(frozen=True)
class RawFile:
  """One official raw file of a downstream task.

  Attributes:
    name: file name inside the task's raw folder (and the name a download is saved under).
    url: official public location, or None where the file only comes inside an archive.
    sha256: sha256 of the official (uncompressed) bytes, or None where no sum is known.
    description: what the file holds, for error messages.
    alternatives: other accepted names in a local folder, e.g. a gzipped copy ("x.json.gz");
      a name ending in ".gz" is decompressed before hashing and reading.
  """

  name: str
  url: str | None
  sha256: str | None
  description: str
  alternatives: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# Reading raw files.


def open_text(path: pathlib.Path) -> io.TextIOBase:
  """Opens a raw text file (gzip-decompressed when its name ends in .gz) as UTF-8, newline="\\n"."""
  if path.suffix == ".gz":
    return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
  return open(path, encoding="utf-8", newline="")


def read_lines(path: pathlib.Path) -> list[str]:
  """Lines of a text file without their line ends ("\\n" or "\\r\\n"); no other splitting."""
  with open_text(path) as f:
    text = f.read()
  if text.endswith("\n"):
    text = text[:-1]
  if not text:
    return []
  return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def sha256_of(path: pathlib.Path) -> str:
  """sha256 of a file's bytes; of the decompressed bytes when the name ends in .gz."""
  digest = hashlib.sha256()
  opener = gzip.open if path.suffix == ".gz" else open
  with opener(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def locate(raw_dir: pathlib.Path, spec: RawFile) -> pathlib.Path:
  """Path of `spec` in `raw_dir` (its name or an accepted alternative), or a PrepareError."""
  for name in (spec.name, *spec.alternatives):
    path = raw_dir / name
    if path.is_file():
      return path
  accepted = " or ".join(repr(n) for n in (spec.name, *spec.alternatives))
  where = f"; official location: {spec.url}" if spec.url else ""
  raise PrepareError(f"missing raw file {raw_dir / spec.name}: expected {accepted} "
                     f"({spec.description}){where}")


def verify(path: pathlib.Path, spec: RawFile) -> str:
  """Checks `path` against `spec.sha256` (when known); returns the file's sha256."""
  actual = sha256_of(path)
  if spec.sha256 is not None and actual != spec.sha256:
    what = "decompressed content of " if path.suffix == ".gz" else ""
    raise PrepareError(
        f"checksum mismatch for {path}: expected sha256 {spec.sha256} for the {what}official "
        f"{spec.name} ({spec.description}), got {actual}. The file is corrupt or not the official "
        f"version; use --skip_checksums to accept it anyway")
  return actual


# ---------------------------------------------------------------------------------------------
# Downloads (need internet access; never used by the tests).


def download(url: str, dest: pathlib.Path, sha256: str | None = None,
             timeout_s: float = 120.0) -> pathlib.Path:
  """Downloads `url` to `dest` (temp file, checksum, then rename); reuses a verified `dest`."""
  if dest.is_file() and (sha256 is None or sha256_of(dest) == sha256):
    return dest
  dest.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
  tmp = pathlib.Path(tmp_name)
  try:
    with os.fdopen(fd, "wb") as out:
      request = urllib.request.Request(url, headers={"User-Agent": "synthetic-pretraining"})
      with urllib.request.urlopen(request, timeout=timeout_s) as response:
        shutil.copyfileobj(response, out, 1 << 20)
    if sha256 is not None and (actual := sha256_of(tmp)) != sha256:
      raise PrepareError(f"checksum mismatch for the download of {url}: expected sha256 {sha256}, "
                         f"got {actual}")
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, dest)
  except (urllib.error.URLError, OSError, ValueError) as e:
    raise PrepareError(
        f"could not download {url} ({type(e).__name__}: {e}). Without internet access, get the "
        f"official file elsewhere and pass the folder holding it with --from DIR "
        f"(or set ${RAW_DATA_DIR_ENV})") from e
  finally:
    tmp.unlink(missing_ok=True)
  return dest


# ---------------------------------------------------------------------------------------------
# Bad lines and field cleaning.


class BadLines:
  """Counts malformed raw records; raises on the first one when `strict`."""

  MAX_EXAMPLES = 5

  def __init__(self, strict: bool = False):
    self.strict = strict
    self.count = 0
    self.examples: list[str] = []

  def add(self, path: os.PathLike | str, line_no: int, reason: str) -> None:
    """Records bad record `line_no` (1-based) of `path`; `reason` says what was expected."""
    message = f"{path}:{line_no}: {reason}"
    if self.strict:
      raise PrepareError(f"malformed record (strict mode): {message}")
    self.count += 1
    if len(self.examples) < self.MAX_EXAMPLES:
      self.examples.append(message)

  def summary(self) -> str:
    if not self.count:
      return "no malformed records"
    more = f" (first {len(self.examples)} shown)" if self.count > len(self.examples) else ""
    return (f"{self.count} malformed record(s) skipped{more}:\n  " + "\n  ".join(self.examples))


_BREAKS = re.compile(r"\r\n|[\t\n\r]")


def _has_break(text: str) -> bool:
  return "\t" in text or "\n" in text or "\r" in text  # much faster than a regex search


class FieldCleaner:
  """Replaces TAB/LF/CR (CRLF as one) by a space and counts the fields it changed."""

  def __init__(self):
    self.changed = 0

  def __call__(self, text: str) -> str:
    if not _has_break(text):
      return text
    self.changed += 1
    return _BREAKS.sub(" ", text)


# ---------------------------------------------------------------------------------------------
# Atomic output.


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def _write_temp(directory: pathlib.Path, name: str, content: bytes | Iterable[str]) -> pathlib.Path:
  fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
  os.close(fd)
  try:
    if isinstance(content, bytes):
      f = open(tmp_name, "wb")
      content = (content,)
    else:
      f = open(tmp_name, "w", encoding="utf-8", newline="")
    with f:
      f.writelines(content)
      f.flush()
      os.fsync(f.fileno())
  except BaseException:
    os.unlink(tmp_name)
    raise
  # mkstemp creates 0600 files; give the final file the permissions a plain open() would.
  os.chmod(tmp_name, 0o666 & ~_umask())
  return pathlib.Path(tmp_name)


def tsv_lines(rows: Iterable[Row], num_fields: int, path_for_errors: str) -> Iterator[str]:
  """TSV lines of `rows`; every row must have `num_fields` fields free of TAB/LF/CR."""
  for i, row in enumerate(rows, 1):
    if len(row) != num_fields or any(_has_break(field) for field in row):
      raise ValueError(f"{path_for_errors}: row {i} is not {num_fields} clean fields: {row!r:.200}")
    yield "\t".join(row) + "\n"


def write_files_atomically(directory: pathlib.Path,
                           files: dict[str, bytes | Iterable[str]]) -> None:
  """Writes every file (bytes, or text chunks encoded as UTF-8) to a temp name, then renames all.

  Nothing is renamed unless every temp file was written completely, so an error (disk full, a bad
  row) leaves the previous outputs untouched and no partial file under a final name.
  """
  directory.mkdir(parents=True, exist_ok=True)
  temps: dict[str, pathlib.Path] = {}
  try:
    for name, content in files.items():
      temps[name] = _write_temp(directory, name, content)
    for name, tmp in temps.items():
      os.replace(tmp, directory / name)
  finally:
    for tmp in temps.values():
      tmp.unlink(missing_ok=True)


def json_bytes(obj) -> bytes:
  """Deterministic JSON (sorted keys, trailing newline) so re-runs give identical files."""
  return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def stable_rank(seed: int, key: str) -> str:
  """Seeded, order- and platform-independent sort key for reproducible subsets/splits."""
  return hashlib.sha256(f"{seed}:{key}".encode("utf-8")).hexdigest()


def pick_subset(keys: Sequence[str], size: int, seed: int) -> set[int]:
  """Indices of the `size` keys with the smallest seeded hash (all when `size` ≥ len)."""
  order = sorted(range(len(keys)), key=lambda i: (stable_rank(seed, keys[i]), i))
  return set(order[:size])
