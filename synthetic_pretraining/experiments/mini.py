"""The CPU mini-experiment: the paper's pipeline at laptop scale, end to end.

`synthetic-pretraining mini [--out DIR] [--seeds N] [--raw_data_dir DIR] [--gin.KNOB=VALUE]`

1. prepares the downstream tasks from their official raw files (a local folder: `--raw_data_dir`,
   env SP_RAW_DATA_DIR, or ../shared/data beside the repository; else a download) and writes a
   short-example subset of each (length and count limits below);
2. pre-trains the tiny T5 on each synthetic task (Set and Identity by default) and naturally (T5 span
   corruption on the natural corpus);
3. fine-tunes every pre-trained model, and one from scratch, on each downstream task, with
   teacher-forced validation accuracy and decoding + metrics on the test subset every eval period;
4. turns the runs into the paper's table: per task, the test metric at the step of best validation
   accuracy, and % of benefit = 100·(S_method − S_scratch)/(S_natural − S_scratch), with a plot.

Everything runs in one process on the byte vocabulary (no SentencePiece model needed). Sizes,
steps and seeds are gin knobs of `mini_experiment` (gin/experiments/mini.gin holds the defaults).
Scale choices (not the paper's): synthetic sequences of 10–60 printable-ASCII byte symbols (the
symbols of the byte-level downstream text), a constant pre-training rate of 0.03 (the paper's
1/√max(step, 10⁴) is a flat 0.01 over its first 10k steps; the tiny model needs ~1k steps at 0.03
to learn Identity; 800 steps here), fine-tuning at 0.01, downstream examples of at most 63 bytes.
Finished runs are skipped and interrupted ones resume, so re-running the command is cheap.
Where no downstream data can be had, it says how to provide them and still pre-trains.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time
from typing import Mapping, Sequence

import gin

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
NATURAL = "natural"
SCRATCH = "from_scratch"


def _log(message: str) -> None:
  print(f"[mini {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _default_raw_dir() -> str | None:
  env = os.environ.get("SP_RAW_DATA_DIR")
  if env:
    return env
  return str(SHARED_DATA) if SHARED_DATA.is_dir() else None


def prepare_subsets(tasks: Sequence[str], out_dir: str, raw_dir: str | None,
                    max_input_bytes: int, max_target_bytes: int,
                    max_examples: Mapping[str, int]) -> list[str]:
  """Prepares each task and writes its short-example subset; returns the tasks that succeeded."""
  from synthetic_pretraining.data import prepare  # pylint: disable=g-import-not-at-top
  full_dir = os.path.join(out_dir, "data", "prepared")
  mini_dir = os.path.join(out_dir, "data", "mini")
  ready = []
  for task in tasks:
    try:
      if not os.path.exists(os.path.join(full_dir, task, "prepare_info.json")):
        prepare.prepare_task(task, data_dir=full_dir, from_dir=raw_dir, log=_log)
    except Exception as e:  # pylint: disable=broad-except
      _log(f"cannot prepare {task}: {e}\n  To provide its data, put the official raw files in a "
           f"folder and pass --raw_data_dir DIR (or set SP_RAW_DATA_DIR), or run `synthetic-"
           f"pretraining prepare --task {task} --from DIR --data_dir {full_dir}`. Skipping its "
           "fine-tuning runs.")
      continue
    counts = {}
    for split, limit in max_examples.items():
      source = os.path.join(full_dir, task, f"{split}.tsv")
      if not os.path.exists(source):
        continue
      kept = []
      with open(source, encoding="utf-8") as f:
        for line in f:
          fields = line.rstrip("\n").split("\t")
          if (len(fields[0].encode()) <= max_input_bytes and
              len(fields[1].encode()) <= max_target_bytes):
            kept.append(line)
          if len(kept) >= limit:
            break
      target = os.path.join(mini_dir, task, f"{split}.tsv")
      os.makedirs(os.path.dirname(target), exist_ok=True)
      with open(target + ".tmp", "w", encoding="utf-8") as f:
        f.writelines(kept)
      os.replace(target + ".tmp", target)
      counts[split] = len(kept)
    if not counts.get("train") or not counts.get("test"):
      _log(f"{task}: no examples within the length limits {max_input_bytes}/{max_target_bytes} "
           "bytes; skipping it")
      continue
    _log(f"{task}: mini subset {counts} (inputs ≤ {max_input_bytes} bytes, targets ≤ "
         f"{max_target_bytes} bytes)")
    ready.append(task)
  os.environ["SP_DATA_DIR"] = mini_dir
  return ready


def _finished(model_dir: str, steps: int) -> bool:
  from synthetic_pretraining.train import checkpoints  # pylint: disable=g-import-not-at-top
  directory = os.path.join(model_dir, checkpoints.CHECKPOINT_SUBDIR)
  return os.path.isdir(directory) and str(steps) in os.listdir(directory)


@gin.configurable
def mini_experiment(out_dir: str = "runs/mini",
                    seeds: int = 1,
                    raw_data_dir: str | None = None,
                    pretrain_tasks: Mapping[str, str] = (("set", "set"), ("identity", "identity"),
                                                         (NATURAL, "natural_span_corruption")),
                    downstream_tasks: Sequence[str] = ("code_translation", "retrosynthesis"),
                    synthetic_length_range: tuple[int, int] = (10, 60),
                    synthetic_alphabet: str = "printable",
                    pretrain_lengths: Mapping[str, int] = (("inputs", 64), ("targets", 64)),
                    pretrain_steps: int = 800,
                    pretrain_batch_size: int = 32,
                    pretrain_learning_rate: float = 0.03,
                    finetune_lengths: Mapping[str, int] = (("inputs", 64), ("targets", 64)),
                    finetune_steps: int = 400,
                    finetune_batch_size: int = 32,
                    finetune_learning_rate: float = 0.01,
                    eval_period: int = 200,
                    eval_steps: int = 8,
                    max_input_bytes: int = 63,
                    max_target_bytes: int = 63,
                    num_train_examples: int = 20_000,
                    num_validation_examples: int = 256,
                    num_test_examples: int = 100,
                    beam_size: int = 4,
                    transfer_mode: str = "all_but_embedding",
                    dropout_rate: float = 0.1,
                    metrics: Sequence[str] = ("em", "chrf"),
                    model_preset: str = "tiny") -> dict:
  """Runs the whole mini-experiment; returns {metric: results table} (see module docstring)."""
  os.environ["SP_VOCAB"] = "byte"  # Before the task registry is imported.
  # pylint: disable=g-import-not-at-top
  from synthetic_pretraining.data import synthetic_sources
  from synthetic_pretraining.experiments import results
  from synthetic_pretraining.model import t5
  from synthetic_pretraining.train import evaluation, loop, optim
  import synthetic_pretraining.tasks  # pylint: disable=unused-import
  # pylint: enable=g-import-not-at-top

  start = time.time()
  out_dir = os.path.abspath(out_dir)
  pretrain_tasks = dict(pretrain_tasks)
  pretrain_lengths, finetune_lengths = dict(pretrain_lengths), dict(finetune_lengths)
  raw_data_dir = raw_data_dir or _default_raw_dir()
  _log(f"output: {out_dir}; raw downstream data: {raw_data_dir or '(download)'}")
  limits = {"train": num_train_examples, "validation": num_validation_examples,
            "test": num_test_examples}
  ready = prepare_subsets(downstream_tasks, out_dir, raw_data_dir, max_input_bytes,
                          max_target_bytes, limits)
  knobs = {"length_range": tuple(synthetic_length_range)}
  if synthetic_alphabet == "printable":  # The symbols the byte-level downstream text uses.
    knobs["alphabet"] = [b + 3 for b in range(32, 127)]
  elif synthetic_alphabet != "all":
    raise ValueError(f"synthetic_alphabet must be 'printable' or 'all', got {synthetic_alphabet!r}")
  synthetic_knobs = {task: dict(knobs) for task in pretrain_tasks.values()
                     if task != "natural_span_corruption"}
  with gin.unlock_config():
    gin.bind_parameter("synthetic_pretraining.generator_knobs.knobs", synthetic_knobs)
  config = t5.get_config(model_preset, dropout_rate=dropout_rate)
  timings = {}

  for seed in range(seeds):
    seed_dir = os.path.join(out_dir, f"seed_{seed}")
    for method, task in pretrain_tasks.items():
      model_dir = os.path.join(seed_dir, "pretrain", method)
      if _finished(model_dir, pretrain_steps):
        _log(f"pre-training {method} (seed {seed}) already done: {model_dir}")
        continue
      _log(f"pre-training {method} on {task} (seed {seed}) → {model_dir}")
      t0 = time.time()
      loop.train(model_dir=model_dir, model_config=config, mixture_or_task_name=task,
                 task_feature_lengths=pretrain_lengths, train_steps=pretrain_steps,
                 batch_size=pretrain_batch_size, seed=seed, data_seed=seed,
                 learning_rate_fn=optim.learning_rate_schedule("constant",
                                                               pretrain_learning_rate),
                 eval_period=pretrain_steps, eval_steps=eval_steps,
                 checkpoint_period=pretrain_steps, log_period=max(pretrain_steps // 5, 1),
                 z_loss=0.0)
      timings[f"pretrain/{method}/seed_{seed}"] = time.time() - t0
    for task in ready:
      for method in [SCRATCH] + list(pretrain_tasks):
        model_dir = os.path.join(seed_dir, "finetune", method, task)
        os.makedirs(model_dir, exist_ok=True)
        with open(os.path.join(model_dir, "run.json"), "w", encoding="utf-8") as f:
          json.dump({"method": method, "task": task, "seed": seed}, f)
        if _finished(model_dir, finetune_steps):
          _log(f"fine-tuning {method} → {task} (seed {seed}) already done")
          continue
        init = None if method == SCRATCH else os.path.join(seed_dir, "pretrain", method)
        _log(f"fine-tuning {method} → {task} (seed {seed}) → {model_dir}")
        t0 = time.time()
        evaluator = evaluation.InferenceEvaluator(
            mixture_or_task_name=task, task_feature_lengths=finetune_lengths, split="test",
            num_examples=num_test_examples, batch_size=min(num_test_examples, 100),
            beam_size=beam_size, write_n_results=3)
        loop.train(model_dir=model_dir, model_config=config, mixture_or_task_name=task,
                   task_feature_lengths=finetune_lengths, train_steps=finetune_steps,
                   batch_size=finetune_batch_size, seed=seed, data_seed=seed,
                   learning_rate_fn=optim.learning_rate_schedule("constant",
                                                                 finetune_learning_rate),
                   eval_period=eval_period, eval_steps=eval_steps, checkpoint_period=eval_period,
                   keep_checkpoints=1, log_period=max(finetune_steps // 4, 1), z_loss=1e-4,
                   initial_checkpoint_path=init, transfer_mode=transfer_mode,
                   inference_evaluator=evaluator)
        timings[f"finetune/{method}/{task}/seed_{seed}"] = time.time() - t0
  del synthetic_sources  # imported for its gin configurables

  tables = {}
  run_dirs = [os.path.join(out_dir, f"seed_{s}", "finetune") for s in range(seeds)]
  if ready:
    for metric in metrics:
      runs = results.load_runs(run_dirs, {task: metric for task in ready})
      table = results.build_table(runs, natural=NATURAL, scratch=SCRATCH,
                                  methods=[m for m in pretrain_tasks if m != NATURAL],
                                  tasks=list(ready), metrics={t: metric for t in ready})
      paths = results.write_report(table, os.path.join(out_dir, "results", metric))
      tables[metric] = table
      print(f"\n## Mini-experiment: % of the benefit of natural pre-training ({metric})\n")
      print(results.format_markdown(table))
      print(f"(written: {', '.join(sorted(paths.values()))})")
  total = time.time() - start
  summary = {"wall_seconds": total, "timings": timings, "tasks": list(ready), "seeds": seeds}
  with open(os.path.join(out_dir, "mini_summary.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=1)
  _log(f"finished in {total / 60:.1f} min; outputs under {out_dir}")
  return tables


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="synthetic-pretraining mini", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", default=None, help="output folder (default runs/mini)")
  parser.add_argument("--seeds", type=int, default=None, help="number of seeds (mean ± std)")
  parser.add_argument("--raw_data_dir", default=None,
                      help="folder with the downstream tasks' official raw files")
  parser.add_argument("--gin_file", action="append", default=None,
                      help="gin files (default experiments/mini.gin)")
  args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
  bindings = []
  for flag in rest:
    if flag.startswith("--gin.") and "=" in flag:
      key, value = flag[len("--gin."):].split("=", 1)
      bindings.append(f"{key} = {value}")
    else:
      parser.error(f"unrecognised argument {flag!r}")
  from synthetic_pretraining.train import main as train_main  # pylint: disable=g-import-not-at-top
  train_main.parse_gin(args.gin_file or ["experiments/mini.gin"], bindings,
                       [train_main.DEFAULT_GIN_DIR])
  overrides = {k: v for k, v in (("out_dir", args.out), ("seeds", args.seeds),
                                 ("raw_data_dir", args.raw_data_dir)) if v is not None}
  mini_experiment(**overrides)
  return 0
