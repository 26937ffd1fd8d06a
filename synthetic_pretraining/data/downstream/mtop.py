"""MTOP (English): utterance → decoupled logical form.

Official release: https://dl.fbaipublicfiles.com/mtop/mtop.zip (short link fb.me/mtop_dataset), with
`mtop/en/{train,eval,test}.txt` (eval = validation). Each line has 8 TAB-separated columns:
  1 id, 2 intent, 3 slot string (`start:end:SL:NAME,…`), 4 utterance, 5 domain, 6 locale (en_XX),
  7 decoupled logical form (`[IN:GET_WEATHER [SL:LOCATION paris ] ]`), 8 tokens JSON
  (`{"tokens": [...], "tokenSpans": [...]}`).
Output `input<TAB>decoupled form` with input = the official tokens joined by single spaces
(default `--mtop_input tokens`, as UnifiedSKG's MTOP loader; the decoupled form's slot values use
the same tokenisation) or the raw utterance (`--mtop_input utterance`). UnifiedSKG would append
` ; structured knowledge: ` with an empty knowledge string, which carries no information and is
not added. No sha256 of the zip is known to this project, so downloads are not checksummed.
Published English counts (unverified here): 15,667 / 2,235 / 4,386.

A local `--from` folder may hold `train.txt/eval.txt/test.txt` directly, under `en/` or
`mtop/en/`, or the official `mtop.zip`.
"""

from __future__ import annotations

import json
import pathlib
import zipfile

from synthetic_pretraining.data.downstream import base
from synthetic_pretraining.data.downstream import common

ZIP_URL = "https://dl.fbaipublicfiles.com/mtop/mtop.zip"
NUM_COLUMNS = 8
_RAW_SPLIT = {"train": "train.txt", "validation": "eval.txt", "test": "test.txt"}
_SUBDIRS = ("", "en", "mtop/en")


class Mtop(base.Converter):
  name = "mtop"
  raw_folder = "mtop"
  raw_files = tuple(
      common.RawFile(f, None, None, f"MTOP English {split} split, 8-column TSV (inside {ZIP_URL})")
      for split, f in _RAW_SPLIT.items())

  def locate(self, raw_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    if not raw_dir.is_dir():
      raise common.PrepareError(f"raw data folder {raw_dir} for task mtop does not exist")
    for sub in _SUBDIRS:
      folder = raw_dir / sub
      if all((folder / f).is_file() for f in _RAW_SPLIT.values()):
        return {f: folder / f for f in _RAW_SPLIT.values()}
    archive = raw_dir / "mtop.zip"
    if archive.is_file():
      return {"mtop.zip": archive}
    missing = [str(raw_dir / f) for f in _RAW_SPLIT.values() if not (raw_dir / f).is_file()]
    raise common.PrepareError(
        f"missing MTOP raw files in {raw_dir}: expected train.txt, eval.txt and test.txt (the "
        f"official 8-column English TSVs) there or under en/ or mtop/en/, or the official "
        f"mtop.zip ({ZIP_URL}); not found: {', '.join(missing)}")

  def fetch(self, download_dir: pathlib.Path) -> pathlib.Path:
    common.download(ZIP_URL, download_dir / "mtop.zip")
    return download_dir

  def convert(self, paths: dict[str, pathlib.Path], options: base.PrepareOptions,
              bad: common.BadLines, clean: common.FieldCleaner) -> base.Converted:
    if options.mtop_input not in ("tokens", "utterance"):
      raise ValueError(f"mtop_input must be 'tokens' or 'utterance', got {options.mtop_input!r}")
    texts = self._read_texts(paths)
    splits = {}
    for split, fname in _RAW_SPLIT.items():
      name, text = texts[fname]
      splits[split] = self._convert_lines(name, text, options, bad, clean)
    return base.Converted(splits, {"input_format": options.mtop_input})

  def _read_texts(self, paths: dict[str, pathlib.Path]) -> dict[str, tuple[str, str]]:
    if "mtop.zip" not in paths:
      out = {}
      for fname in _RAW_SPLIT.values():
        with common.open_text(paths[fname]) as f:
          out[fname] = (str(paths[fname]), f.read())
      return out
    archive = paths["mtop.zip"]
    try:
      with zipfile.ZipFile(archive) as z:
        out = {}
        for fname in _RAW_SPLIT.values():
          member = f"mtop/en/{fname}"
          try:
            data = z.read(member)
          except KeyError as e:
            raise common.PrepareError(f"{archive} has no member {member} (expected the official "
                                      "MTOP layout mtop/en/{train,eval,test}.txt)") from e
          out[fname] = (f"{archive}!{member}", data.decode("utf-8"))
        return out
    except zipfile.BadZipFile as e:
      raise common.PrepareError(f"{archive} is not a valid zip archive ({e})") from e

  def _convert_lines(self, name: str, text: str, options: base.PrepareOptions,
                     bad: common.BadLines, clean: common.FieldCleaner) -> list[common.Row]:
    if text.endswith("\n"):
      text = text[:-1]
    rows = []
    for i, line in enumerate(text.split("\n") if text else [], 1):
      line = line[:-1] if line.endswith("\r") else line
      fields = line.split("\t")
      if len(fields) != NUM_COLUMNS:
        bad.add(name, i, f"expected {NUM_COLUMNS} TAB-separated columns (id, intent, slots, "
                f"utterance, domain, locale, decoupled form, tokens JSON), got {len(fields)}")
        continue
      utterance, logical_form = fields[3], fields[6]
      if not utterance.strip() or not logical_form.strip():
        bad.add(name, i, "expected a non-empty utterance (column 4) and decoupled logical form "
                "(column 7)")
        continue
      if options.mtop_input == "tokens":
        try:
          tokens = json.loads(fields[7])["tokens"]
          if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise TypeError("'tokens' is not a list of strings")
        except (ValueError, KeyError, TypeError) as e:
          bad.add(name, i, f"column 8 must be JSON with a 'tokens' list of strings ({e})")
          continue
        source = " ".join(tokens)
      else:
        source = utterance
      rows.append((clean(source), clean(logical_form)))
    return rows

