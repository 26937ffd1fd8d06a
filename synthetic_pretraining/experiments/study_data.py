"""Downstream data of the mini-study: short, byte-sized versions of the paper's tasks.

`write_study_splits(task, prepared_dir, out_dir, limits, seed)` turns the splits written by
`prepare` (`<prepared_dir>/<task>/<split>.tsv`) into the study's `input<TAB>target` files
`<out_dir>/<study task>/{train,validation,test}.tsv`; `register_study_tasks(vocabulary, data_dir)`
registers them as SeqIO tasks (name `study_<task>`) with the release's translation pipeline
(tab split → tokenise → EOS) and exact-match / F1 / chrF metrics.

Study tasks (all byte-level, so every example fits the tiny model's lengths without truncation):
* `squad_window`: SQuAD v1.1 as `question: Q context: W` → the first gold answer, where W is a
  window of the paragraph that contains the answer at a random offset (seeded), cut at spaces and
  sized so the input fits `max_input_bytes`. The natural corpus is Wikipedia, like SQuAD's
  paragraphs. Train/validation come from SQuAD's train split (disjoint article titles are not
  tracked; paragraphs differ), test from SQuAD's validation split.
* `retrosynthesis`, `webqsp`, `code_translation`: the prepared splits, keeping examples whose input
  and target fit the byte limits (first N in file order). Copy baseline (prediction = input) applies
  to retrosynthesis and code_translation (targets share most characters with the inputs).
"""

from __future__ import annotations

import functools
import os
import random
from typing import Mapping

from synthetic_pretraining.train import checkpoints

STUDY_PREFIX = "study_"
STUDY_TASKS = ("squad_window", "retrosynthesis", "webqsp", "code_translation")
SOURCE_TASK = {"squad_window": "squad", "retrosynthesis": "retrosynthesis", "webqsp": "webqsp",
               "code_translation": "code_translation"}
COPY_BASELINE_TASKS = ("retrosynthesis", "code_translation")
SPLITS = ("train", "validation", "test")
STUDY_NATURAL = "study_natural"


def study_task_name(task: str) -> str:
  return STUDY_PREFIX + task


def _check_task(task: str) -> None:
  if task not in STUDY_TASKS:
    raise ValueError(f"unknown study task {task!r}; expected one of {list(STUDY_TASKS)}")


def _read_tsv(path: str, num_fields: int) -> list[list[str]]:
  rows = []
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      fields = line.rstrip("\n").split("\t")
      if len(fields) != num_fields:
        raise ValueError(f"{path}:{number}: expected {num_fields} TAB-separated fields, found "
                         f"{len(fields)}")
      rows.append(fields)
  return rows


def _fits(text: str, limit: int) -> bool:
  return len(text.encode("utf-8")) <= limit


def squad_window_example(question: str, context: str, answer: str, max_input_bytes: int,
                         rng: random.Random) -> str | None:
  """`question: Q context: W` with W a window of `context` holding `answer`, or None.

  W starts at a uniformly drawn offset among those whose window of the byte budget still holds the
  answer's first occurrence, and is then cut back to whole words. None when the answer is absent,
  the budget is under twice the answer's length, or the window has non-ASCII bytes past the budget.
  """
  prefix = f"question: {question} context: "
  budget = max_input_bytes - len(prefix.encode("utf-8"))
  where = context.find(answer)
  if where < 0 or not answer or budget < 2 * len(answer.encode("utf-8")):
    return None
  answer_end = where + len(answer)
  lowest = max(0, answer_end - budget)
  highest = min(where, max(0, len(context) - budget))
  start = rng.randint(lowest, highest) if highest >= lowest else lowest
  end = min(start + budget, len(context))
  head = context[start:where]
  if start > 0 and " " in head:  # Begin at a word.
    start += head.index(" ") + 1
  tail = context[answer_end:end]
  if end < len(context) and " " in tail:  # End at a word.
    end = answer_end + tail.rindex(" ")
  window = context[start:end].strip()
  if answer not in window or not _fits(window, budget):
    return None
  return prefix + window


def write_study_splits(task: str, prepared_dir: str, out_dir: str, *, max_input_bytes: int,
                       max_target_bytes: int, num_examples: Mapping[str, int],
                       seed: int = 0) -> dict[str, int]:
  """Writes `<out_dir>/<task>/{train,validation,test}.tsv`; returns the counts per split."""
  _check_task(task)
  source = os.path.join(prepared_dir, SOURCE_TASK[task])
  rows: dict[str, list[str]] = {}
  if task == "squad_window":
    rng = random.Random(seed)
    def windows(split: str, limit: int, skip: int = 0) -> list[str]:
      kept, seen = [], 0
      for question_context, answer, _ in _read_tsv(os.path.join(source, f"{split}.tsv"), 3):
        if not question_context.startswith("question: ") or " context: " not in question_context:
          raise ValueError(f"{source}/{split}.tsv: expected 'question: … context: …' inputs")
        question, context = question_context[len("question: "):].split(" context: ", 1)
        if not _fits(answer, max_target_bytes):
          continue
        example = squad_window_example(question, context, answer, max_input_bytes, rng)
        if example is None:
          continue
        seen += 1
        if seen <= skip:
          continue
        kept.append(f"{example}\t{answer}\n")
        if len(kept) >= limit:
          break
      return kept
    rows["train"] = windows("train", num_examples["train"])
    rows["validation"] = windows("train", num_examples["validation"],
                                 skip=num_examples["train"])
    rows["test"] = windows("validation", num_examples["test"])
  else:
    for split in SPLITS:
      kept = []
      for inputs, targets in _read_tsv(os.path.join(source, f"{split}.tsv"), 2):
        if _fits(inputs, max_input_bytes) and _fits(targets, max_target_bytes):
          kept.append(f"{inputs}\t{targets}\n")
          if len(kept) >= num_examples[split]:
            break
      rows[split] = kept
  counts = {}
  target_dir = os.path.join(out_dir, task)
  os.makedirs(target_dir, exist_ok=True)
  for split, lines in rows.items():
    if not lines:
      raise ValueError(f"{task}: no {split} example of {source} fits {max_input_bytes}/"
                       f"{max_target_bytes} bytes")
    with checkpoints.atomic_output(os.path.join(target_dir, f"{split}.tsv")) as f:
      f.writelines(lines)
    counts[split] = len(lines)
  checkpoints.atomic_write_json(
      os.path.join(target_dir, "study_info.json"),
      {"task": task, "source": source, "counts": counts, "seed": seed,
       "max_input_bytes": max_input_bytes, "max_target_bytes": max_target_bytes})
  return counts


def read_split(data_dir: str, task: str, split: str) -> list[tuple[str, str]]:
  """The (input, target) strings of a written study split, in file order."""
  return [(r[0], r[1]) for r in _read_tsv(os.path.join(data_dir, task, f"{split}.tsv"), 2)]


def register_study_tasks(vocabulary, data_dir: str, tasks=STUDY_TASKS) -> list[str]:
  """Registers (or replaces) `study_<task>` over `<data_dir>/<task>/<split>.tsv`."""
  # pylint: disable=g-import-not-at-top
  import seqio
  from synthetic_pretraining.data import downstream_tasks
  from synthetic_pretraining.data import metrics
  # pylint: enable=g-import-not-at-top
  output_features = {"inputs": seqio.Feature(vocabulary=vocabulary, add_eos=True),
                     "targets": seqio.Feature(vocabulary=vocabulary, add_eos=True)}
  names = []
  for task in tasks:
    _check_task(task)
    name = study_task_name(task)
    seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(
        name,
        source=seqio.TextLineDataSource(
            {split: os.path.join(data_dir, task, f"{split}.tsv") for split in SPLITS}),
        output_features=output_features,
        preprocessors=[functools.partial(downstream_tasks.parse_tsv, task=name, num_fields=2),
                       seqio.preprocessors.tokenize_and_append_eos],
        metric_fns=[metrics.exact_match_f1])
    names.append(name)
  return names


def register_worker_tasks(vocabulary, data_dir: str,
                          natural_mean_noise_span: float = 3.0) -> list[str]:
  """Registers, for `vocabulary`, what a study run may train on.

  The synthetic tasks and mixtures (set, identity, lime, …), the natural span-corruption task as
  `study_natural` (mean noise span `natural_mean_noise_span` bytes), and the study's downstream
  tasks over `data_dir`. Explicit: nothing here reads the environment.
  """
  # pylint: disable=g-import-not-at-top
  from synthetic_pretraining.data import natural
  from synthetic_pretraining.tasks import synthetic
  # pylint: enable=g-import-not-at-top
  names = list(synthetic.register_synthetic_tasks(vocabulary))
  natural.register_natural_task(vocabulary, name=STUDY_NATURAL,
                                mean_noise_span_length=natural_mean_noise_span)
  names.append(STUDY_NATURAL)
  available = [t for t in STUDY_TASKS if os.path.isdir(os.path.join(data_dir, t))]
  return names + register_study_tasks(vocabulary, data_dir, tasks=available)
