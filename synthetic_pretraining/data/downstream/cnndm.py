"""CNN/DailyMail → `cnndm_10k`: article → highlights, with a reproducible 10k-example train subset.

What is known about the paper's data: the release reads `lowercase_{train,val,test}.txt` of
Krishna et al. (2021)'s lowercased CNN/DM and keeps a 10k-example training subset; how that subset
was drawn, its tokenisation and the val/test sizes are not recorded. This converter therefore
starts from the standard non-anonymised CNN/DM (HF `cnn_dailymail` 3.0.0 text) and:
- lowercases article and highlights by default (`--no-cnndm_lowercase` keeps the case);
- joins the highlight sentences with `--cnndm_highlight_joiner` (default " "): the raw highlights
  are newline-separated sentences ending in " ." (e.g. "… diagnosed .\\nHe contracted …"), so a
  space keeps the " . " boundaries that t5's ROUGE turns back into lines for ROUGE-Lsum, and is
  what T5's SentencePiece makes of a newline anyway;
- selects the training subset as the `--cnndm_train_size` (default 10,000) examples with the
  smallest sha256("<seed>:<id>") — reproducible, independent of file order and format (CSV and
  .story give the same subset), written in that hash order; validation and test are complete
  (13,368 / 11,490 in 3.0.0) and keep their source order;
- puts `--cnndm_prefix` (default "", as the release; T5 used "summarize: ") before each article.
Examples with an empty article or highlights are skipped (as HF/tfds do) and counted.

Accepted raw layouts in a local folder (`--from`):
1. CSV (HF 3.0.0 text, e.g. the Kaggle "newspaper-text-summarization-cnn-dailymail" files):
   `train.csv`, `validation.csv`, `test.csv` with columns `id,article,highlights` (an extra
   leading pandas index column, as in ../shared/data/cnn_dailymail, is fine);
2. the original stories: url lists `all_train.txt`, `all_val.txt`, `all_test.txt` (in the folder
   or its `url_lists/`) plus `cnn_stories.tgz` and `dailymail_stories.tgz`, or the extracted
   `cnn/stories/` and `dailymail/stories/` folders. Story text is read as HF 3.0.0 does (lines
   stripped, " ." added to lines without final punctuation, article lines joined by spaces,
   lines after the first `@highlight` are highlights).
Without a local folder the stories and url lists are downloaded (≈ 0.5 GB; no sha256 known).
"""

from __future__ import annotations

import csv
import hashlib
import pathlib
import sys
import tarfile
from typing import Iterable, Iterator

from synthetic_pretraining.data.downstream import base
from synthetic_pretraining.data.downstream import common

_HF = ("https://huggingface.co/datasets/cnn_dailymail/resolve/"
       "11343c3752184397d56efc19a8a7cceb68089318/data/")
_LISTS = "https://raw.githubusercontent.com/abisee/cnn-dailymail/master/url_lists/"
CSV_FILES = {"train": "train.csv", "validation": "validation.csv", "test": "test.csv"}
URL_LISTS = {"train": "all_train.txt", "validation": "all_val.txt", "test": "all_test.txt"}
PUBLISHERS = {"cnn_stories": "cnn", "dailymail_stories": "dailymail"}
_END_TOKENS = {".", "!", "?", "'", "`", '"', "\u2019", "\u201d", ")"}


def url_id(url: str) -> str:
  """CNN/DM example id: sha1 hex of the article URL (the .story file name)."""
  return hashlib.sha1(url.encode("utf-8")).hexdigest()


def parse_story(text: str) -> tuple[str, list[str]]:
  """(article, highlight sentences) of a .story file, as HF cnn_dailymail 3.0.0 reads it."""
  article, highlights, in_highlights = [], [], False
  for line in text.split("\n"):
    line = line.strip()
    if not line:
      continue
    if line.startswith("@highlight"):
      in_highlights = True
      continue
    if "@highlight" not in line and line[-1] not in _END_TOKENS:
      line += " ."
    (highlights if in_highlights else article).append(line)
  return " ".join(article), highlights


class CnnDailymail(base.Converter):
  name = "cnndm_10k"
  raw_folder = "cnn_dailymail"
  raw_files = (
      common.RawFile("cnn_stories.tgz", _HF + "cnn_stories.tgz", None, "CNN .story files"),
      common.RawFile("dailymail_stories.tgz", _HF + "dailymail_stories.tgz", None,
                     "Daily Mail .story files"),
      *(common.RawFile(f, _LISTS + f, None, f"CNN/DM {split} url list (See et al.)")
        for split, f in URL_LISTS.items()),
  )

  def locate(self, raw_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    if not raw_dir.is_dir():
      raise common.PrepareError(f"raw data folder {raw_dir} for task cnndm_10k does not exist")
    csvs = {f: raw_dir / f for f in CSV_FILES.values()}
    if any(p.is_file() for p in csvs.values()):
      missing = [str(p) for p in csvs.values() if not p.is_file()]
      if missing:
        raise common.PrepareError(
            f"incomplete CNN/DM CSV set in {raw_dir}: missing {', '.join(missing)} (expected "
            "train.csv, validation.csv and test.csv with columns id,article,highlights)")
      return csvs
    paths = {}
    for f in URL_LISTS.values():
      found = [p for p in (raw_dir / f, raw_dir / "url_lists" / f) if p.is_file()]
      if not found:
        raise common.PrepareError(
            f"no CNN/DM raw data in {raw_dir}: expected either train.csv/validation.csv/test.csv "
            f"(columns id,article,highlights) or the url lists {', '.join(URL_LISTS.values())} "
            f"(here or in url_lists/) with the stories; missing {raw_dir / f}")
      paths[f] = found[0]
    for key, publisher in PUBLISHERS.items():
      archive, folder = raw_dir / f"{key}.tgz", raw_dir / publisher / "stories"
      if archive.is_file():
        paths[key] = archive
      elif folder.is_dir():
        paths[key] = folder
      else:
        raise common.PrepareError(f"missing CNN/DM stories in {raw_dir}: expected {archive} "
                                  f"(official: {_HF}{key}.tgz) or the extracted folder {folder}")
    return paths

  def convert(self, paths: dict[str, pathlib.Path], options: base.PrepareOptions,
              bad: common.BadLines, clean: common.FieldCleaner) -> base.Converted:
    if options.cnndm_train_size <= 0:
      raise ValueError(f"cnndm_train_size must be positive, got {options.cnndm_train_size}")
    notes: dict[str, object] = {"skipped_empty": 0}
    if "train.csv" in paths:
      examples = {split: self._read_csv(paths[f], bad) for split, f in CSV_FILES.items()}
      for split, exs in examples.items():
        valid = [e for e in exs if e[1].strip() and any(h.strip() for h in e[2])]
        notes["skipped_empty"] += len(exs) - len(valid)
        examples[split] = valid
      ids = [e[0] for e in examples["train"]]
      chosen = common.pick_subset(ids, options.cnndm_train_size, options.seed)
      examples["train"] = sorted((examples["train"][i] for i in chosen),
                                 key=lambda e: common.stable_rank(options.seed, e[0]))
      notes["raw_format"] = "csv"
    else:
      examples = self._read_stories(paths, options, notes)
      notes["raw_format"] = "story"
    if len(examples["train"]) < options.cnndm_train_size:
      notes["train_subset_short"] = (f"only {len(examples['train'])} training examples available "
                                     f"(< {options.cnndm_train_size})")
    splits = {}
    for split, exs in examples.items():
      rows = []
      for _, article, highlights in exs:
        source = options.cnndm_prefix + article
        target = options.cnndm_highlight_joiner.join(h.strip() for h in highlights if h.strip())
        if options.cnndm_lowercase:
          source, target = source.lower(), target.lower()
        rows.append((clean(source), clean(target)))
      splits[split] = rows
    notes.update(lowercased=options.cnndm_lowercase, seed=options.seed,
                 highlight_joiner=options.cnndm_highlight_joiner, prefix=options.cnndm_prefix)
    return base.Converted(splits, notes)

  # --- CSV --------------------------------------------------------------------------------------
  def _read_csv(self, path: pathlib.Path,
                bad: common.BadLines) -> list[tuple[str, str, list[str]]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # articles exceed the 128 KiB default
    out = []
    with common.open_text(path) as f:
      reader = csv.reader(f)
      try:
        header = next(reader)
      except StopIteration:
        raise common.PrepareError(f"{path} is empty: expected a header with id,article,highlights")
      try:
        cols = [header.index(c) for c in ("id", "article", "highlights")]
      except ValueError:
        raise common.PrepareError(f"{path}:1: expected a header containing the columns id, "
                                  f"article, highlights; got {header}") from None
      try:
        for row in reader:
          if len(row) != len(header):
            bad.add(path, reader.line_num, f"expected {len(header)} CSV fields ({header}), "
                    f"got {len(row)}")
            continue
          out.append((row[cols[0]], row[cols[1]], row[cols[2]].split("\n")))
      except csv.Error as e:
        raise common.PrepareError(f"{path}:{reader.line_num}: malformed CSV ({e})") from e
    return out

  # --- .story files ----------------------------------------------------------------------------
  def _read_stories(self, paths: dict[str, pathlib.Path], options: base.PrepareOptions,
                    notes: dict) -> dict[str, list[tuple[str, str, list[str]]]]:
    ids = {split: [url_id(u) for u in common.read_lines(paths[f]) if u.strip()]
           for split, f in URL_LISTS.items()}
    ranked_train = sorted(ids["train"], key=lambda i: common.stable_rank(options.seed, i))
    wanted = set(ids["validation"]) | set(ids["test"])
    size = options.cnndm_train_size
    n_candidates = min(len(ranked_train), size + max(100, size // 20))
    stories: dict[str, tuple[str, list[str]]] = {}
    done = 0
    while True:
      wanted |= set(ranked_train[done:n_candidates])
      for story_id, text in self._iter_stories(paths, wanted - stories.keys()):
        stories[story_id] = parse_story(text)
      train = [i for i in ranked_train[:n_candidates] if self._usable(stories.get(i))]
      if len(train) >= size or n_candidates == len(ranked_train):
        break
      done, n_candidates = n_candidates, min(len(ranked_train), 2 * n_candidates)
    examples = {"train": [(i, *stories[i]) for i in train[:size]]}
    for split in ("validation", "test"):
      examples[split] = [(i, *stories[i]) for i in ids[split] if self._usable(stories.get(i))]
    looked_at = set(ids["validation"]) | set(ids["test"]) | set(ranked_train[:n_candidates])
    notes["missing_stories"] = sum(i not in stories for i in looked_at)
    notes["skipped_empty"] += sum(i in stories and not self._usable(stories[i]) for i in looked_at)
    return examples

  @staticmethod
  def _usable(story: tuple[str, list[str]] | None) -> bool:
    return story is not None and bool(story[0]) and bool(story[1])

  def _iter_stories(self, paths: dict[str, pathlib.Path],
                    wanted: set[str]) -> Iterator[tuple[str, str]]:
    for key in PUBLISHERS:
      source = paths[key]
      if source.is_dir():
        yield from self._iter_folder(source, wanted)
      else:
        yield from self._iter_archive(source, wanted)

  @staticmethod
  def _iter_folder(folder: pathlib.Path, wanted: Iterable[str]) -> Iterator[tuple[str, str]]:
    for story_id in sorted(wanted):
      path = folder / f"{story_id}.story"
      if path.is_file():
        yield story_id, path.read_text(encoding="utf-8")

  @staticmethod
  def _iter_archive(archive: pathlib.Path, wanted: set[str]) -> Iterator[tuple[str, str]]:
    try:
      with tarfile.open(archive, "r:*") as tar:
        for member in tar:
          name = member.name.rsplit("/", 1)[-1]
          if member.isfile() and name.endswith(".story") and name[:-6] in wanted:
            data = tar.extractfile(member).read()
            yield name[:-6], data.decode("utf-8")
    except tarfile.TarError as e:
      raise common.PrepareError(f"{archive} is not a readable tar archive ({e})") from e
