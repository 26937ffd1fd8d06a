"""The mini-study: does the paper's effect show on a laptop? (`synthetic-pretraining mini`)

`synthetic-pretraining mini [--out DIR] [--profile cpu|gpu|smoke] [--seeds N] [--workers K]
[--raw_data_dir DIR] [--gin_file F] [--gin.study.KNOB=VALUE]`

The paper's claim is three numbers — LIME 67 %, Set 65 % and Set's parameter statistics 39 % of the
benefit of natural pre-training. This command measures the same quantities at a scale that fits
the 2-core CPU (the `cpu` profile, the default: `gin/experiments/study/cpu.gin`) or one GPU
(`gpu`), with paired seeds and bootstrap confidence intervals:

1. **Data.** `prepare` turns the official raw files (`--raw_data_dir`, else ../shared/data beside
   the repository) into splits; `study_data` cuts byte-sized study tasks from them (see there:
   `squad_window`, `retrosynthesis`, `webqsp`, `code_translation`).
2. **Pre-training** (one run per row, seed 0): natural = T5 span corruption on the natural corpus
   (Wikipedia summaries); Set; LIME (the `lime` mixture); Identity. Synthetic rows use sequences of
   printable-ASCII byte symbols (those of the downstream text).
3. **Fine-tuning**, `seeds` seeds per row and task, paired: seed s of every row has the same data
   order and dropout seed. Rows: from_scratch; natural; set; lime; identity (weight transfer from
   the pre-trained run); set_statistics (default init re-drawn from the Set checkpoint's
   per-tensor statistics: `per_param_grouping___init_scale`, the paper's "Per Param Scale");
   pre_attn_ln (every pre-attention layer-norm scale set to a constant, Table 3). Learning rate
   `constant * linear_decay` to zero; scored at the last step (no checkpoint selection).
4. **Scoring** at the last step (`train.evaluation.TestSetEvaluator`): per test example the
   teacher-forced target loss (the primary metric: loss per target byte, EOS included) and greedy
   predictions (exact match, token F1, chrF); the copy baseline (prediction = input) where it
   applies.
5. **Statistics** (`study_stats`): % of benefit per task and as the ratio of summed gains over the
   tasks where natural beats scratch by more than two standard errors (paired bootstrap over test
   examples and seeds; decided on the natural and scratch rows only); 95 % intervals.
6. **Output** under `--out` (default runs/mini): `results/results.md`, `results/results.csv`,
   `results/benefit.png`, `results/summary.json`, the per-phase wall times, and run folders
   `pretrain/<row>/`, `finetune/<row>/<task>/seed_<s>/` (checkpoints, metrics.jsonl,
   test_eval.npz). Re-running skips finished runs (a run is finished when its `test_eval.npz`,
   or for pre-training its last checkpoint, exists).

Every run is a gin configuration: the model file (`models/tiny.gin` …), the run file
(`experiments/study/pretrain_run.gin` or `finetune_run.gin`) and bindings built from the study's
gin-bound `StudyConfig` (what a person would type as `--gin.KEY=VALUE`); each worker process parses
them afresh with `train.main.run_from_gin`. Tasks are registered explicitly in each worker for the
vocabulary of the run files' `VOCABULARY` macro (byte) (`study_data.register_worker_tasks`). Workers are separate processes with
`threads_per_worker` XLA/TF threads each: on 2 cores, two 1-thread workers gave more runs per hour
than one 2-thread process.

The design sweep that chose the defaults is in docs/mini_study.md, with the commands that
reproduce it.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import multiprocessing
import os
import pathlib
import sys
import time
import traceback
from typing import Any, Mapping, Sequence

import gin

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
SCRATCH, NATURAL = "from_scratch", "natural"
ALL_ROWS = (SCRATCH, NATURAL, "set", "lime", "identity", "set_statistics", "pre_attn_ln")
PRETRAIN_TASKS = {NATURAL: "study_natural", "set": "set", "lime": "lime",
                  "identity": "identity"}
PAPER = {"lime": 67, "set": 65, "set_statistics": 39}
PROFILES = {"cpu": "experiments/study/cpu.gin", "gpu": "experiments/study/gpu.gin",
            "smoke": "experiments/study/smoke.gin"}


def _log(message: str) -> None:
  print(f"[mini {time.strftime('%H:%M:%S')}] {message}", flush=True)


@gin.configurable(module="study")
@dataclasses.dataclass
class StudyConfig:
  """What the study runs (bound by gin/experiments/study/*.gin)."""
  tasks: Sequence[str] = ("squad_window", "retrosynthesis", "webqsp")
  rows: Sequence[str] = ALL_ROWS
  seeds: int = 3
  workers: int = 2
  threads_per_worker: int = 1
  model_gin: str = "models/tiny.gin"
  model_bindings: Sequence[str] = ("DROPOUT_RATE = 0.1",)
  # Data: per task (max input bytes, max target bytes); examples per split.
  byte_limits: Mapping[str, Sequence[int]] = (("squad_window", (127, 31)),
                                              ("retrosynthesis", (63, 63)),
                                              ("webqsp", (63, 63)),
                                              ("code_translation", (63, 63)))
  num_examples: Mapping[str, int] = (("train", 20000), ("validation", 500), ("test", 1000))
  # Pre-training: steps per row, learning rate, batch, lengths.
  pretrain_steps: Mapping[str, int] = ((NATURAL, 1500), ("set", 300), ("lime", 300),
                                       ("identity", 300))
  pretrain_learning_rate: float = 0.03
  pretrain_batch_size: int = 32
  natural_lengths: Mapping[str, int] = (("inputs", 128), ("targets", 32))
  natural_mean_noise_span: float = 3.0
  synthetic_lengths: Mapping[str, int] = (("inputs", 64), ("targets", 64))
  synthetic_length_range: Sequence[int] = (10, 60)
  # Fine-tuning.
  finetune_steps: int = 300
  finetune_learning_rate: float = 0.01
  finetune_batch_size: int = 32
  transfer_mode: str = "all"
  statistics_init_id: str = "per_param_grouping___init_scale"
  pre_attn_ln_value: float = 0.4
  decode: bool = True
  # Statistics.
  bootstrap_replicates: int = 2000
  separation_z: float = 2.0

  def __post_init__(self):
    unknown = sorted(set(self.rows) - set(ALL_ROWS))
    if unknown or SCRATCH not in self.rows or NATURAL not in self.rows:
      raise ValueError(f"study.StudyConfig.rows = {list(self.rows)}: every row must be one of "
                       f"{list(ALL_ROWS)}, and from_scratch and natural are required")
    if self.seeds < 1 or self.workers < 1 or self.threads_per_worker < 1:
      raise ValueError(f"study.StudyConfig: seeds ({self.seeds}), workers ({self.workers}) and "
                       f"threads_per_worker ({self.threads_per_worker}) must be ≥ 1")
    if "set_statistics" in self.rows and "set" not in dict(self.pretrain_steps):
      raise ValueError("row set_statistics needs the Set pre-training (pretrain_steps['set'])")

  def lengths(self, task: str) -> dict[str, int]:
    inputs, targets = dict(self.byte_limits)[task]
    return {"inputs": _round_up(inputs + 1, 8), "targets": _round_up(targets + 1, 8)}


def _round_up(value: int, multiple: int) -> int:
  return -(-value // multiple) * multiple


# --------------------------------------------------------------------------------------------
# The runs.


@dataclasses.dataclass
class Run:
  key: str
  model_dir: str
  gin_files: list
  bindings: list
  deps: list
  done_marker: str
  phase: str


def _literal(value: Any) -> str:
  return repr(value if not isinstance(value, tuple) else list(value))


def plan_runs(cfg: StudyConfig, out_dir: str, data_dir: str) -> list[Run]:
  """Every pre-training and fine-tuning run of the study, with its gin files and bindings."""
  runs = []
  pretrain_steps = dict(cfg.pretrain_steps)
  common = list(cfg.model_bindings) + [f"STUDY_DATA_DIR = {_literal(data_dir)}",
                                       f"NATURAL_MEAN_NOISE_SPAN = {cfg.natural_mean_noise_span}",
                                       f"SYNTHETIC_LENGTH_RANGE = "
                                       f"{_literal(tuple(cfg.synthetic_length_range))}"]
  needed = {r for r in cfg.rows if r in PRETRAIN_TASKS}
  if "set_statistics" in cfg.rows:
    needed.add("set")
  # Longest first (natural), so the other worker's shorter runs fill in beside it.
  for row in sorted(needed, key=lambda r: (-pretrain_steps[r], r)):
    steps = pretrain_steps[row]
    model_dir = os.path.join(out_dir, "pretrain", row)
    lengths = dict(cfg.natural_lengths if row == NATURAL else cfg.synthetic_lengths)
    runs.append(Run(
        key=f"pretrain/{row}", model_dir=model_dir,
        gin_files=[cfg.model_gin, "experiments/study/pretrain_run.gin"],
        bindings=common + [f"MODEL_DIR = {_literal(model_dir)}",
                           f"MIXTURE_OR_TASK_NAME = {_literal(PRETRAIN_TASKS[row])}",
                           f"TASK_FEATURE_LENGTHS = {_literal(lengths)}",
                           f"TRAIN_STEPS = {steps}", f"BATCH_SIZE = {cfg.pretrain_batch_size}",
                           f"LEARNING_RATE = {cfg.pretrain_learning_rate}"],
        deps=[], done_marker=os.path.join(model_dir, "checkpoints", str(steps)),
        phase=f"pretrain/{row}"))
  from synthetic_pretraining.experiments import study_data  # pylint: disable=g-import-not-at-top
  for task in cfg.tasks:
    for seed in range(cfg.seeds):
      for row in cfg.rows:
        model_dir = os.path.join(out_dir, "finetune", row, task, f"seed_{seed}")
        bindings = common + [
            f"MODEL_DIR = {_literal(model_dir)}",
            f"MIXTURE_OR_TASK_NAME = {_literal(study_data.study_task_name(task))}",
            f"TASK_FEATURE_LENGTHS = {_literal(cfg.lengths(task))}",
            f"TRAIN_STEPS = {cfg.finetune_steps}", f"BATCH_SIZE = {cfg.finetune_batch_size}",
            f"LEARNING_RATE = {cfg.finetune_learning_rate}", f"SEED = {seed}",
            f"DECODE = {cfg.decode}"]
        deps = []
        if row in PRETRAIN_TASKS:
          bindings += [f"INITIAL_CHECKPOINT_PATH = "
                       f"{_literal(os.path.join(out_dir, 'pretrain', row))}",
                       f"TRANSFER_MODE = {_literal(cfg.transfer_mode)}"]
          deps.append(f"pretrain/{row}")
        elif row == "set_statistics":
          bindings += [f"INIT_ID = {_literal(cfg.statistics_init_id)}",
                       f"STATISTICS_CHECKPOINT = "
                       f"{_literal(os.path.join(out_dir, 'pretrain', 'set'))}"]
          deps.append("pretrain/set")
        elif row == "pre_attn_ln":
          bindings += [f"PRE_ATTN_LN_VALUE = {cfg.pre_attn_ln_value}"]
        runs.append(Run(key=f"finetune/{row}/{task}/seed_{seed}", model_dir=model_dir,
                        gin_files=[cfg.model_gin, "experiments/study/finetune_run.gin"],
                        bindings=bindings, deps=deps,
                        done_marker=os.path.join(model_dir, "test_eval.npz"),
                        phase="finetune"))
  return runs


@gin.configurable(module="mini")
def run_with_study_tasks(train_fn=gin.REQUIRED, vocabulary=gin.REQUIRED,
                         data_dir: str = gin.REQUIRED, natural_mean_noise_span: float = 3.0):
  """A study run (gin `main.run.function`): registers the study's tasks, then calls `train_fn`."""
  from synthetic_pretraining.experiments import study_data  # pylint: disable=g-import-not-at-top
  study_data.register_worker_tasks(vocabulary, data_dir,
                                   natural_mean_noise_span=natural_mean_noise_span)
  return train_fn()


# --------------------------------------------------------------------------------------------
# Worker processes.


def _worker_main(threads: int, cache_dir: str | None, jobs, results) -> None:
  """A worker: limits its threads, then runs (gin files, bindings) jobs until told to stop.

  Runs of one task share their compiled programs through JAX's persistent compilation cache in
  `cache_dir` (compiling the tiny model's train step takes far longer than training it here).
  """
  from synthetic_pretraining import environment  # pylint: disable=g-import-not-at-top
  environment.limit_threads(threads)  # Before jax/TF start.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_intra_op_parallelism_threads(threads)
  tf.config.threading.set_inter_op_parallelism_threads(threads)
  if cache_dir:
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  from synthetic_pretraining.train import main as train_main  # pylint: disable=g-import-not-at-top
  while True:
    job = jobs.get()
    if job is None:
      return
    key, gin_files, bindings = job
    start = time.time()
    try:
      train_main.run_from_gin(gin_files, bindings)
      results.put((key, None, time.time() - start))
    except BaseException as e:  # pylint: disable=broad-except
      results.put((key, f"{type(e).__name__}: {e}\n{traceback.format_exc()}",
                   time.time() - start))


def execute(runs: Sequence[Run], workers: int, threads: int,
            cache_dir: str | None = None) -> dict[str, float]:
  """Runs what is not finished, `workers` at a time in dependency order; returns wall times."""
  pending = [r for r in runs if not os.path.exists(r.done_marker)]
  finished = {r.key for r in runs if os.path.exists(r.done_marker)}
  if len(finished):
    _log(f"{len(finished)} of {len(runs)} runs already finished; skipping them")
  timings: dict[str, float] = {}
  if not pending:
    return timings
  context = multiprocessing.get_context("spawn")
  jobs, results = context.Queue(), context.Queue()
  procs = [context.Process(target=_worker_main, args=(threads, cache_dir, jobs, results), daemon=True)
           for _ in range(min(workers, len(pending)))]
  for p in procs:
    p.start()
  running: set[str] = set()
  by_key = {r.key: r for r in pending}
  try:
    while pending or running:
      ready = [r for r in pending if all(d in finished for d in r.deps)]
      while ready and len(running) < len(procs):
        run = ready.pop(0)
        pending.remove(run)
        running.add(run.key)
        _log(f"start {run.key}")
        jobs.put((run.key, run.gin_files, run.bindings))
      key, error, seconds = results.get()
      running.discard(key)
      if error is not None:
        raise RuntimeError(f"run {key} failed (model dir {by_key[key].model_dir}):\n{error}")
      finished.add(key)
      timings[key] = seconds
      _log(f"done  {key} in {seconds:.0f} s ({len(finished)}/{len(runs)})")
  finally:
    for _ in procs:
      jobs.put(None)
    for p in procs:
      p.join(timeout=30)
      if p.is_alive():
        p.terminate()
  return timings


# --------------------------------------------------------------------------------------------
# Data preparation.


def prepare_data(cfg: StudyConfig, out_dir: str, raw_dir: str | None) -> str:
  """Prepares the downstream tasks and writes the study's splits; returns the data folder."""
  # pylint: disable=g-import-not-at-top
  from synthetic_pretraining.data import prepare
  from synthetic_pretraining.experiments import study_data
  # pylint: enable=g-import-not-at-top
  full_dir = os.path.join(out_dir, "data", "prepared")
  study_dir = os.path.join(out_dir, "data", "study")
  limits = dict(cfg.byte_limits)
  from synthetic_pretraining.data import downstream  # pylint: disable=g-import-not-at-top
  # WebQSP as bare questions (the UnifiedSKG layout appends entity lists far past the byte limits).
  options = downstream.PrepareOptions(webqsp_input="question")
  for task in cfg.tasks:
    source = study_data.SOURCE_TASK[task]
    info_path = os.path.join(full_dir, source, "prepare_info.json")
    if os.path.exists(info_path) and source == "webqsp":
      with open(info_path, encoding="utf-8") as f:
        if json.load(f).get("options", {}).get("webqsp_input", "question") != "question":
          os.remove(info_path)
    if not os.path.exists(info_path):
      if raw_dir is None:
        raise FileNotFoundError(
            f"no raw data for {source}: pass --raw_data_dir DIR (a folder holding the official "
            f"files, e.g. ../shared/data), or run `synthetic-pretraining prepare --task {source} "
            f"--from DIR --data_dir {full_dir}` first")
      prepare.prepare_task(source, data_dir=full_dir, from_dir=raw_dir, options=options, log=_log)
    info = os.path.join(study_dir, task, "study_info.json")
    wanted = {"max_input_bytes": limits[task][0], "max_target_bytes": limits[task][1]}
    if os.path.exists(info):
      with open(info, encoding="utf-8") as f:
        old = json.load(f)
      if all(old.get(k) == v for k, v in wanted.items()) and all(
          old["counts"].get(s, 0) <= n for s, n in dict(cfg.num_examples).items()):
        continue
    counts = study_data.write_study_splits(task, full_dir, study_dir,
                                           num_examples=dict(cfg.num_examples), **wanted)
    _log(f"{task}: study splits {counts} (≤ {wanted['max_input_bytes']} input bytes, ≤ "
         f"{wanted['max_target_bytes']} target bytes)")
  return study_dir


# --------------------------------------------------------------------------------------------
# Entry point.


def run_study(cfg: StudyConfig, out_dir: str, raw_dir: str | None) -> dict:
  """The whole study; returns summary.json's content."""
  # pylint: disable=g-import-not-at-top
  from synthetic_pretraining.experiments import study_report
  # pylint: enable=g-import-not-at-top
  start = time.time()
  out_dir = os.path.abspath(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  phases = {}
  t0 = time.time()
  data_dir = prepare_data(cfg, out_dir, raw_dir)
  phases["preparation"] = time.time() - t0
  runs = plan_runs(cfg, out_dir, data_dir)
  t0 = time.time()
  timings = execute(runs, cfg.workers, cfg.threads_per_worker,
                    cache_dir=os.path.join(out_dir, "jax_cache"))
  phases["training (wall, all workers)"] = time.time() - t0
  for key, seconds in timings.items():
    phase = key.split("/")[0] if key.startswith("finetune") else key
    phases[f"{phase} (worker seconds)"] = phases.get(f"{phase} (worker seconds)", 0) + seconds
  evaluation = _evaluation_seconds([r for r in runs if r.key in timings and r.phase == "finetune"])
  if evaluation is not None:
    phases["evaluation, inside finetune (worker seconds)"] = evaluation
  t0 = time.time()
  summary = study_report.report(cfg, out_dir, data_dir, phases=phases)
  phases["tables"] = time.time() - t0
  summary["wall_seconds"] = time.time() - start
  summary["phases"] = phases
  study_report.write_summary(out_dir, summary)
  _log(f"finished in {summary['wall_seconds'] / 60:.1f} min; results in "
       f"{os.path.join(out_dir, 'results')}")
  return summary


def _evaluation_seconds(runs: Sequence[Run]) -> float | None:
  """The test-set evaluations' wall seconds (their metrics.jsonl records) summed over `runs`."""
  from synthetic_pretraining.train import metrics_io  # pylint: disable=g-import-not-at-top
  seconds = [r.get("seconds") for run in runs for r in metrics_io.read(run.model_dir)
             if r.get("group") == "test_eval"]
  if not seconds or any(s is None for s in seconds):
    return None
  return float(sum(seconds))


def _default_raw_dir() -> str | None:
  from synthetic_pretraining import environment  # pylint: disable=g-import-not-at-top
  return environment.get(environment.RAW_DATA_DIR) or (
      str(SHARED_DATA) if SHARED_DATA.is_dir() else None)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="synthetic-pretraining mini", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", default="runs/mini", help="output folder (default runs/mini)")
  parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES),
                      help="study size: cpu (2 cores, ~30 min), gpu (one H100/H200), smoke")
  parser.add_argument("--smoke", action="store_true",
                      help="the profile at smoke sizes (experiments/study/smoke_sizes.gin)")
  parser.add_argument("--seeds", type=int, default=None, help="fine-tuning seeds per row")
  parser.add_argument("--workers", type=int, default=None, help="worker processes")
  parser.add_argument("--raw_data_dir", default=None,
                      help="folder with the downstream tasks' official raw files (default: "
                           "$SP_RAW_DATA_DIR, else ../shared/data beside the repository)")
  parser.add_argument("--gin_file", action="append", default=[],
                      help="extra gin files (after the profile's)")
  args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
  bindings = []
  for flag in rest:
    if flag.startswith("--gin.") and "=" in flag:
      key, value = flag[len("--gin."):].split("=", 1)
      bindings.append(f"{key} = {value}")
    else:
      parser.error(f"unrecognised argument {flag!r} (gin bindings are --gin.KEY=VALUE)")
  for name, value in (("seeds", args.seeds), ("workers", args.workers)):
    if value is not None:
      if value < 1:
        parser.error(f"--{name} must be ≥ 1, got {value}")
      bindings.append(f"study.StudyConfig.{name} = {value}")
  from synthetic_pretraining.train import main as train_main  # pylint: disable=g-import-not-at-top
  files = [PROFILES[args.profile]] + (["experiments/study/smoke_sizes.gin"] if args.smoke else [])
  train_main.parse_gin(files + args.gin_file, bindings,
                       [train_main.DEFAULT_GIN_DIR])
  cfg = StudyConfig()
  raw_dir = args.raw_data_dir or _default_raw_dir()
  run_study(cfg, args.out, raw_dir)
  return 0
