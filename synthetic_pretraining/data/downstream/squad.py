"""SQuAD v1.1 in the form of T5's `squad_v010_allanswers` task (tfds squad/v1.1 + t5 `squad`).

Rows are `input<TAB>target<TAB>answers`:
- input  = `question: <q> context: <c>` with q and c punctuation-padded as
  `t5.data.preprocessors.squad` does (a space on both sides of every ASCII punctuation character,
  then every run of RE2 whitespace [\\t\\n\\f\\r ] collapsed to one space; not stripped, so a
  trailing space can remain);
- target = the first answer, padded the same way;
- answers = JSON list of ALL answers (padded, duplicates kept, in file order) — what T5's `qa`
  postprocessor hands to the SQuAD metric. JSON escapes TAB/LF, so the line stays 3 fields.
Questions are grouped by id as tfds does (answers of a repeated id are merged). Splits: train
(87,599) and validation (= dev, 10,570); SQuAD v1.1 has no public test split.
"""

from __future__ import annotations

import json
import pathlib
import re
import string

from synthetic_pretraining.data.downstream import base
from synthetic_pretraining.data.downstream import common

_URL = "https://rajpurkar.github.io/SQuAD-explorer/dataset/"
# RE2's [[:punct:]] (ASCII punctuation) and \s ([\t\n\f\r ]), which TF's regex_replace uses;
# Python's own \s would also match Unicode spaces such as U+00A0 that T5 leaves untouched.
_PAD_TABLE = str.maketrans({c: f" {c} " for c in string.punctuation})
_RE2_SPACE = re.compile(r"[\t\n\f\r ]+")


def pad_punctuation(text: str) -> str:
  """T5's `_pad_punctuation`: ' x ' around each ASCII punctuation, whitespace runs → ' '."""
  return _RE2_SPACE.sub(" ", text.translate(_PAD_TABLE))


def t5_squad_input(padded_question: str, padded_context: str) -> str:
  """T5's `_string_join(['question:', q, 'context:', c])` for q, c from `pad_punctuation`.

  A padded string has no whitespace run, so the join can only create runs at the seams; only the
  short head is collapsed, and the context loses at most the one space that would merge.
  """
  head = _RE2_SPACE.sub(" ", f"question: {padded_question} context: ")
  return head + padded_context.removeprefix(" ")


class Squad(base.Converter):
  name = "squad"
  raw_folder = "squad"
  splits = ("train", "validation")
  num_fields = 3
  raw_files = (
      common.RawFile("train-v1.1.json", _URL + "train-v1.1.json",
                     "3527663986b8295af4f7fcdff1ba1ff3f72d07d61a20f487cb238a6ef92fd955",
                     "official SQuAD v1.1 training JSON", ("train-v1.1.json.gz",)),
      common.RawFile("dev-v1.1.json", _URL + "dev-v1.1.json",
                     "95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9",
                     "official SQuAD v1.1 development JSON", ("dev-v1.1.json.gz",)),
  )

  def convert(self, paths: dict[str, pathlib.Path], options: base.PrepareOptions,
              bad: common.BadLines, clean: common.FieldCleaner) -> base.Converted:
    return base.Converted({
        "train": self._convert_file(paths["train-v1.1.json"], bad, clean),
        "validation": self._convert_file(paths["dev-v1.1.json"], bad, clean),
    })

  def _convert_file(self, path: pathlib.Path, bad: common.BadLines,
                    clean: common.FieldCleaner) -> list[common.Row]:
    try:
      with common.open_text(path) as f:
        data = json.load(f)["data"]
    except (ValueError, KeyError, TypeError) as e:
      raise common.PrepareError(f"{path}: not a SQuAD JSON file with a top-level 'data' list "
                                f"({type(e).__name__}: {e})") from e
    questions: dict[str, dict] = {}  # id -> {"question", "context", "answers"}, file order
    record = 0
    for article in data:
      for paragraph in article.get("paragraphs", []):
        context = paragraph.get("context")
        for qa in paragraph.get("qas", []):
          record += 1
          qid, question = qa.get("id"), qa.get("question")
          answers = [a.get("text") for a in qa.get("answers", []) if isinstance(a, dict)]
          if (not isinstance(qid, str) or not isinstance(question, str)
              or not isinstance(context, str) or not answers
              or not all(isinstance(a, str) for a in answers)):
            bad.add(path, record, "expected a question with 'id', 'question', a paragraph "
                    "'context' and at least one answer 'text' (record = question number)")
            continue
          if qid in questions:
            questions[qid]["answers"].extend(answers)
          else:
            questions[qid] = {"question": question, "context": context, "answers": answers}
    padded_contexts: dict[str, str] = {}
    rows = []
    for q in questions.values():
      context = padded_contexts.get(q["context"])
      if context is None:
        context = padded_contexts[q["context"]] = pad_punctuation(q["context"])
      answers = [pad_punctuation(a) for a in q["answers"]]
      rows.append((clean(t5_squad_input(pad_punctuation(q["question"]), context)),
                   clean(answers[0]), json.dumps(answers, ensure_ascii=False)))
    return rows
