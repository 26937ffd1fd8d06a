"""WebQSP question → S-expression (rng-kbqa/ChatKBQA JSON, fields ID, question, sexpr,
gold_entity_map).

Input (default `--webqsp_input unifiedskg`): UnifiedSKG's layout
`<question> ; structured knowledge: <mid>: <name> <mid>: <name> …` with the gold entities in file
order. UnifiedSKG's struct_in is `entities | kg tuples` — the retrieved Freebase sub-graph
(`kg_tuples`) is not in these files, so the ` | head rel tail | …` part is absent (this makes the
task harder than in the paper: relations must be recalled, not copied). The mids matter: the
targets refer to entities by mid. `--webqsp_input question` gives the bare question.

Splits: train drops examples whose S-expression is "null" (as UnifiedSKG; 107 of 3,098) and then
moves `--webqsp_valid_size` examples (default 309, UnifiedSKG's dev size) chosen by a seeded hash
of their IDs into validation, so train + validation = 2,991. `--webqsp_valid_size 0` keeps all
2,991 in train and writes a copy of test as validation (checkpoint selection then sees the test
set — only for comparisons with setups that had no dev set). Test keeps all 1,639 examples, the
42 "null" ones with the literal target `null` (as UnifiedSKG's test set), which no model trained
on null-free data is expected to produce: they bound test EM at 97.4 %.
"""

from __future__ import annotations

import json
import pathlib

from synthetic_pretraining.data.downstream import base
from synthetic_pretraining.data.downstream import common

_URL = ("https://raw.githubusercontent.com/divinerIU/RankKBQA/"
        "e9079b9f6428fe8411a3653c1595666dd589af48/data/WebQSP/generation/merged/")
NULL = "null"


class WebQSP(base.Converter):
  name = "webqsp"
  raw_folder = "webqsp"
  raw_files = (
      common.RawFile("WebQSP_train.json", _URL + "WebQSP_train.json",
                     "b64c7df8be6de4b2b4d2b869b085b700f0e3f6facfb5a60819296d3cd9027476",
                     "WebQSP train questions with gold S-expressions (3,098 records)"),
      common.RawFile("WebQSP_test.json", _URL + "WebQSP_test.json",
                     "79587d91f986ea5abb83c93a87edd12d35c42380499907203b1a6f0a182ca55f",
                     "WebQSP test questions with gold S-expressions (1,639 records)"),
  )

  def convert(self, paths: dict[str, pathlib.Path], options: base.PrepareOptions,
              bad: common.BadLines, clean: common.FieldCleaner) -> base.Converted:
    if options.webqsp_input not in ("unifiedskg", "question"):
      raise ValueError(f"webqsp_input must be 'unifiedskg' or 'question', "
                       f"got {options.webqsp_input!r}")
    train = self._read(paths["WebQSP_train.json"], options, bad, clean)
    test = self._read(paths["WebQSP_test.json"], options, bad, clean)
    kept = [(qid, row) for qid, row in train if row[1] != NULL]
    if options.webqsp_valid_size >= len(kept):
      raise common.PrepareError(
          f"--webqsp_valid_size {options.webqsp_valid_size} leaves no training example "
          f"({len(kept)} non-null examples in {paths['WebQSP_train.json']})")
    if options.webqsp_valid_size < 0:
      raise ValueError(f"webqsp_valid_size must be ≥ 0, got {options.webqsp_valid_size}")
    valid_ids = common.pick_subset([qid for qid, _ in kept], options.webqsp_valid_size,
                                   options.seed)
    test_rows = [row for _, row in test]
    notes = {"train_null_sexpr_dropped": len(train) - len(kept),
             "test_null_sexpr_kept": sum(row[1] == NULL for row in test_rows),
             "input_format": options.webqsp_input}
    if options.webqsp_valid_size == 0:
      validation = test_rows
      notes["validation"] = "copy of test (--webqsp_valid_size 0)"
    else:
      validation = [row for i, (_, row) in enumerate(kept) if i in valid_ids]
    return base.Converted(
        {"train": [row for i, (_, row) in enumerate(kept) if i not in valid_ids],
         "validation": validation, "test": test_rows}, notes)

  def _read(self, path: pathlib.Path, options: base.PrepareOptions, bad: common.BadLines,
            clean: common.FieldCleaner) -> list[tuple[str, common.Row]]:
    try:
      with common.open_text(path) as f:
        records = json.load(f)
    except ValueError as e:
      raise common.PrepareError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(records, list):
      raise common.PrepareError(f"{path}: expected a JSON list of question records")
    rows = []
    for i, rec in enumerate(records, 1):
      entities = rec.get("gold_entity_map", {}) if isinstance(rec, dict) else None
      if (not isinstance(rec, dict) or not isinstance(rec.get("ID"), str)
          or not isinstance(rec.get("question"), str) or not isinstance(rec.get("sexpr"), str)
          or not rec["sexpr"] or not isinstance(entities, dict)):
        bad.add(path, i, "expected a record with string 'ID', 'question', non-empty 'sexpr' and "
                "a 'gold_entity_map' object (record = list position)")
        continue
      question = rec["question"].strip()
      if options.webqsp_input == "unifiedskg":
        knowledge = " ".join(f"{str(mid).strip()}: {str(name).strip()}"
                             for mid, name in entities.items())
        question = f"{question} ; structured knowledge: {knowledge}".rstrip()
      rows.append((rec["ID"], (clean(question), clean(rec["sexpr"]))))
    return rows
