"""One catalogue entry per downstream task: every fact about the task, in one place.

From `CATALOGUE` derive:
* the SeqIO registrations (`data.downstream_tasks.register_downstream_tasks`): splits, TSV fields,
  tokenisation/EOS pipeline, postprocessor, metric functions;
* the metric functions per task (`data.metrics.METRIC_FNS`) and the reported metric of the results
  tables (`experiments.results.TASK_METRICS`);
* the fine-tuning gin files `gin/experiments/finetune/<task>.gin` (`finetune_gin(entry)`; a test
  checks that the files in the tree are exactly what the catalogue gives; rewrite them with
  `python -m synthetic_pretraining.data.catalogue --write gin/experiments/finetune`);
* the converter `prepare` uses (`converter` names `data.downstream.CONVERTERS[...]`).

Adding a task is one `DownstreamTask(...)` entry (plus its converter, if `prepare` should build
it from raw files). Importing this module is cheap: no TensorFlow, seqio or JAX.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Mapping, Sequence

PIPELINES = ("eos_before_trim", "eos_after_trim")
POSTPROCESSORS = ("target_text", "squad_answers")
METRIC_NAMES = ("exact_match_f1", "chrf", "rouge", "squad")


@dataclasses.dataclass(frozen=True)
class FinetuneSettings:
  """The paper's fine-tuning settings of a task (SPEC §5.4), written into its gin file."""

  learning_rate: float
  train_steps: int
  batch_size: int
  period: int
  max_decode_length: int
  pack: bool
  infer_eval_split: str
  evaluator_num_examples: int
  eval_steps: int = 128
  note: str = ""  # extra header lines (without "# ")


@dataclasses.dataclass(frozen=True)
class DownstreamTask:
  """Everything about one downstream task.

  Attributes:
    name: SeqIO task name, prepared-data folder name and gin file name.
    converter: name of its `prepare` converter in `data.downstream.CONVERTERS` (None: none).
    splits: splits `prepare` writes (`<data dir>/<name>/<split>.tsv`).
    fields: the TAB-separated fields of a line (`inputs`, `targets`[, extra]).
    feature_lengths: SPEC §3 input/target lengths.
    metrics: metric function names of `data.metrics` (scored on decoded predictions).
    reported_metric: the metric the paper's tables report.
    postprocessor: `target_text` (targets as decoded ids or raw text) or `squad_answers` (every
      gold answer from the `answers` field).
    pipeline: `eos_before_trim` (the release's translation processors: tokenize_and_append_eos)
      or `eos_after_trim` (T5's squad: tokenize, cache placeholder, append_eos_after_trim).
    finetune: the paper's fine-tuning settings (gin file); None: no gin file.
  """

  name: str
  converter: str | None
  splits: tuple[str, ...]
  fields: tuple[str, ...]
  feature_lengths: Mapping[str, int]
  metrics: tuple[str, ...]
  reported_metric: str
  postprocessor: str = "target_text"
  pipeline: str = "eos_before_trim"
  finetune: FinetuneSettings | None = None

  def __post_init__(self):
    where = f"catalogue entry {self.name!r}"
    if self.fields[:2] != ("inputs", "targets"):
      raise ValueError(f"{where}: fields must start with ('inputs', 'targets'), got {self.fields}")
    if set(self.feature_lengths) != {"inputs", "targets"}:
      raise ValueError(f"{where}: feature_lengths needs 'inputs' and 'targets'")
    if self.pipeline not in PIPELINES:
      raise ValueError(f"{where}: pipeline must be one of {PIPELINES}, got {self.pipeline!r}")
    if self.postprocessor not in POSTPROCESSORS:
      raise ValueError(f"{where}: postprocessor must be one of {POSTPROCESSORS}, got "
                       f"{self.postprocessor!r}")
    unknown = [m for m in self.metrics if m not in METRIC_NAMES]
    if unknown:
      raise ValueError(f"{where}: unknown metric function(s) {unknown}; known: {METRIC_NAMES}")
    if self.postprocessor == "squad_answers" and "answers" not in self.fields:
      raise ValueError(f"{where}: the squad_answers postprocessor needs an 'answers' field")
    if self.finetune and self.finetune.infer_eval_split not in self.splits:
      raise ValueError(f"{where}: inference split {self.finetune.infer_eval_split!r} is not one "
                       f"of its splits {self.splits}")

  @property
  def num_fields(self) -> int:
    return len(self.fields)


_TRANSLATION = dict(splits=("train", "validation", "test"), fields=("inputs", "targets"),
                    metrics=("exact_match_f1", "chrf"), reported_metric="em")

CATALOGUE: dict[str, DownstreamTask] = {t.name: t for t in (
    DownstreamTask(
        "cnndm_10k", converter="cnndm_10k", splits=("train", "validation", "test"),
        fields=("inputs", "targets"), feature_lengths={"inputs": 512, "targets": 256},
        metrics=("rouge",), reported_metric="rouge1",
        finetune=FinetuneSettings(
            1e-3, 100_000, 128, 10_000, 148, False, "test", 20_000,
            note="(The authors' own runs used 150k steps and a 5k period; the natural baseline is "
                 "T5 v1.1 small:\nuse --gin_file=models/t5_1_1_small.gin for that row.)")),
    DownstreamTask(
        "code_translation", converter="code_translation",
        feature_lengths={"inputs": 1024, "targets": 1024}, **_TRANSLATION,
        finetune=FinetuneSettings(
            3e-3, 150_000, 32, 10_000, 1024, False, "test", 5000,
            note="(Tables 2 and 3 evaluated 10,000 examples: --gin.EVALUATOR_NUM_EXAMPLES=10000.)")),
    DownstreamTask(
        "mtop", converter="mtop", feature_lengths={"inputs": 1024, "targets": 128},
        **_TRANSLATION,
        finetune=FinetuneSettings(1e-3, 100_000, 128, 10_000, 128, False, "test", 5000)),
    DownstreamTask(
        "retrosynthesis", converter="retrosynthesis",
        feature_lengths={"inputs": 256, "targets": 256}, **_TRANSLATION,
        finetune=FinetuneSettings(3e-3, 400_000, 128, 10_000, 256, False, "test", 5000)),
    DownstreamTask(
        "squad", converter="squad", splits=("train", "validation"),
        fields=("inputs", "targets", "answers"), feature_lengths={"inputs": 512, "targets": 128},
        metrics=("squad",), reported_metric="em", postprocessor="squad_answers",
        pipeline="eos_after_trim",
        finetune=FinetuneSettings(
            1e-3, 250_000, 128, 10_000, 128, True, "validation", 20_000,
            note="(Packing is on in Table 1 and off in Tables 2/3: --gin.PACK=False there.)")),
    DownstreamTask(
        "webqsp", converter="webqsp", feature_lengths={"inputs": 2048, "targets": 256},
        **_TRANSLATION,
        finetune=FinetuneSettings(1e-3, 50_000, 32, 5000, 256, False, "test", 20_000)),
)}

# Names the results tooling also accepts for runs of T5's own registrations.
REPORTED_METRIC_ALIASES = {"squad_v010_allanswers": "squad"}


def reported_metrics() -> dict[str, str]:
  """Task name -> the metric the paper's tables report (aliases included)."""
  table = {name: task.reported_metric for name, task in CATALOGUE.items()}
  for alias, name in REPORTED_METRIC_ALIASES.items():
    table[alias] = CATALOGUE[name].reported_metric
  return table


def get(name: str) -> DownstreamTask:
  try:
    return CATALOGUE[name]
  except KeyError:
    raise ValueError(f"no downstream task {name!r} in the catalogue (tasks: "
                     f"{sorted(CATALOGUE)})") from None


def _rate(value: float) -> str:
  return f"{value:.0e}".replace("e-0", "e-")


def finetune_gin(task: DownstreamTask) -> str:
  """The text of `gin/experiments/finetune/<task>.gin` for `task`."""
  f = task.finetune
  if f is None:
    raise ValueError(f"catalogue entry {task.name!r} has no fine-tuning settings")
  lengths = task.feature_lengths
  return (
      f"# Table 1 fine-tuning run on {task.name} with the paper's settings (SPEC §5.4): LR "
      f"{_rate(f.learning_rate)} constant, {f.train_steps} steps,\n"
      f"# batch {f.batch_size}, checkpoint + evaluation every {f.period} steps, beam 4 (α 0.6), "
      f"max decode {f.max_decode_length}, pack {f.pack},\n"
      f"# inference eval on the {f.infer_eval_split} split ({f.evaluator_num_examples} examples), "
      f"feature lengths {lengths['inputs']}/{lengths['targets']}.\n"
      + "".join(f"# {line}\n" for line in f.note.splitlines()) +
      "# Command (from a synthetic or natural pre-training checkpoint; or "
      "INITIAL_CHECKPOINT_PATH=None for\n"
      "# the from-scratch row; TRANSFER_MODE 'all' | 'all_but_embedding' | 'from_scratch'):\n"
      "#   python -m synthetic_pretraining.train --gin_file=models/t5_small.gin \\\n"
      f"#     --gin_file=experiments/finetune/{task.name}.gin "
      f"--gin.MODEL_DIR=\"'/runs/set/{task.name}'\" \\\n"
      "#     --gin.INITIAL_CHECKPOINT_PATH=\"'/runs/pretrain_set/checkpoints/10000'\"\n"
      "# Produces in MODEL_DIR: checkpoints/ (all kept), metrics.jsonl with train, teacher-forced "
      "validation\n"
      "# token accuracy (training_eval) and the test metrics of beam-search predictions "
      "(inference_eval) at\n"
      "# every period, inference_eval/ predictions; `synthetic-pretraining results` turns such "
      "run\n"
      "# directories into the paper's table.\n"
      "# Generated from synthetic_pretraining/data/catalogue.py (edit the entry there).\n"
      "include 'runs/finetune.gin'\n"
      "\n"
      f"MIXTURE_OR_TASK_NAME = '{task.name}'\n"
      f"TASK_FEATURE_LENGTHS = {{'inputs': {lengths['inputs']}, 'targets': "
      f"{lengths['targets']}}}\n"
      f"LEARNING_RATE = {_rate(f.learning_rate)}\n"
      f"TRAIN_STEPS = {f.train_steps}\n"
      f"BATCH_SIZE = {f.batch_size}\n"
      f"PERIOD = {f.period}\n"
      f"MAX_DECODE_LENGTH = {f.max_decode_length}\n"
      f"PACK = {f.pack}\n"
      f"INFER_EVAL_SPLIT = '{f.infer_eval_split}'\n"
      f"EVALUATOR_NUM_EXAMPLES = {f.evaluator_num_examples}\n"
      f"EVAL_STEPS = {f.eval_steps}\n")


def write_finetune_gin(folder: str, tasks: Sequence[DownstreamTask] | None = None) -> list[str]:
  """Writes `<folder>/<task>.gin` for every catalogue task with fine-tuning settings."""
  written = []
  for task in tasks or CATALOGUE.values():
    if task.finetune is None:
      continue
    from synthetic_pretraining.train import checkpoints  # pylint: disable=g-import-not-at-top
    path = os.path.join(folder, f"{task.name}.gin")
    checkpoints.atomic_write_text(path, finetune_gin(task))
    written.append(path)
  return written


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description="Write the fine-tuning gin files of the catalogue.")
  parser.add_argument("--write", required=True, help="folder, e.g. gin/experiments/finetune")
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  for path in write_finetune_gin(args.write):
    print(path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
