"""The gin-bound training loop (T5X's `train_script.train`, much smaller).

`train(model_dir=, model_config=, dataset=DatasetConfig(…), train_steps=, …)` trains on a SeqIO
mixture or task. What a run is comes in a few typed, gin-configurable objects, as in T5X:

* `DatasetConfig`: task or mixture, registry module and vocabulary, feature lengths, batch size,
  data seed, shuffling, packing;
* `CheckpointConfig`: checkpoint period, how many to keep, whether a resume may change the run;
* `trainer.LossConfig`: z-loss, label smoothing, the fused output layer;
* `InitConfig`: initial checkpoint + weight-transfer mode, and an initialisation hook;
* `EvalConfig`: teacher-forced validation accuracy (period, batches, split);
plus `inference_evaluator`, a callback `f(trainer=, params=, step=, model_dir=)` called at every
evaluation point including the final step (decoding + the task's metrics).

A run resumes from the newest intact checkpoint in `model_dir` (a step whose files cannot be read
is moved aside with a warning naming it; see `checkpoints.Checkpointer.restore_latest`); without
one it optionally starts from `InitConfig.checkpoint_path` and applies the hook. It logs progress
lines, evaluates every `EvalConfig.period` steps, writes TensorBoard summaries and
`metrics.jsonl` (one record per step and group, also after a resume: records of steps after the
resumed checkpoint, written by the interrupted run, are dropped first), and checkpoints every
`CheckpointConfig.period` steps and at the end.

Guards (the run stops with one clear error instead of silently going wrong):
* the model's vocabulary (`T5Config.vocab_size`, gin VOCAB_SIZE) must cover the task's vocabulary;
* a non-finite training loss stops the run before a checkpoint of that state is written
  (`stop_on_nonfinite_loss = False` lets it go on);
* `MODEL_DIR` is locked for the run (`MODEL_DIR/.lock`): a second live run on it is refused;
* resuming a `MODEL_DIR` whose recorded task, model, batch size or feature lengths differ is
  refused unless `CheckpointConfig.allow_config_change = True`; `run_info.json` keeps the history
  of every start;
* a run that fails before writing its first checkpoint removes what it created (no skeleton
  `MODEL_DIR`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import numbers
import os
import time
from typing import Any, Callable, Mapping

import gin
import jax
import numpy as np
from clu import metric_writers

from synthetic_pretraining.model import flops
from synthetic_pretraining.model import t5
from synthetic_pretraining.train import checkpoints
from synthetic_pretraining.train import data_input
from synthetic_pretraining.train import metrics_io
from synthetic_pretraining.train import optim
from synthetic_pretraining.train import partitioning
from synthetic_pretraining.train import trainer as trainer_lib

logger = logging.getLogger(__name__)

COMPATIBILITY_FIELDS = ("mixture_or_task_name", "task_feature_lengths", "batch_size",
                        "model_config")


class NonFiniteLossError(ValueError):
  """The training loss became NaN or infinite."""


class RunConfigMismatchError(ValueError):
  """Resuming a run directory whose recorded configuration differs from this run's."""


class VocabularyMismatchError(ValueError):
  """The model's vocabulary size does not cover the task's vocabulary."""


def _log(message: str) -> None:
  if jax.process_index() == 0:
    print(message, flush=True)


def _integer(name: str, value: Any, minimum: int | None = None) -> int:
  """`value` as an int, or a ValueError naming the parameter and what was expected."""
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise ValueError(f"{name} must be an integer{f' >= {minimum}' if minimum is not None else ''}"
                     f", got {value!r}")
  if minimum is not None and value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
  return int(value)


# ---- configuration objects ----------------------------------------------------------------------
@gin.configurable
@dataclasses.dataclass(frozen=True)
class DatasetConfig:
  """The training data (T5X's DatasetConfig).

  Attributes:
    mixture_or_task_name: a registered SeqIO task or mixture (macro MIXTURE_OR_TASK_NAME).
    task_feature_lengths: {'inputs': n, 'targets': m} (macro TASK_FEATURE_LENGTHS).
    batch_size: global batch size (macro BATCH_SIZE).
    module: module(s) imported to register tasks (macro MIXTURE_OR_TASK_MODULE); None: none.
    vocabulary: if set, `module.register_all(vocabulary)` re-registers the module's tasks for it
      (the run files bind `@vocab.task_vocabulary()`, macro VOCABULARY).
    seed: data seed (shuffling, streamed synthetic data).
    shuffle: shuffle the training split.
    pack: pack several examples per row.
    autotune: tf.data autotuning of the input pipelines (`data_input.get_dataset`: off by
      default, because deleting an autotuned iterator stalls for up to a minute at a run's end).
  """

  mixture_or_task_name: str
  task_feature_lengths: Mapping[str, int]
  batch_size: int
  module: str | None = "synthetic_pretraining.tasks"
  vocabulary: Any = None
  seed: int = 42
  shuffle: bool = True
  pack: bool = False
  autotune: bool = False

  def __post_init__(self):
    if not isinstance(self.mixture_or_task_name, str) or not self.mixture_or_task_name:
      raise ValueError(f"DatasetConfig.mixture_or_task_name (macro MIXTURE_OR_TASK_NAME) must be "
                       f"a task or mixture name, got {self.mixture_or_task_name!r}")
    lengths = self.task_feature_lengths
    if not isinstance(lengths, Mapping) or set(lengths) != {"inputs", "targets"}:
      raise ValueError("DatasetConfig.task_feature_lengths (macro TASK_FEATURE_LENGTHS) must be "
                       f"{{'inputs': n, 'targets': m}}, got {lengths!r}")
    for key in ("inputs", "targets"):
      _integer(f"TASK_FEATURE_LENGTHS['{key}']", lengths[key], minimum=1)
    _integer("DatasetConfig.batch_size (macro BATCH_SIZE)", self.batch_size, minimum=1)
    _integer("DatasetConfig.seed", self.seed)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
  """Checkpointing of the train state.

  Attributes:
    period: save every `period` steps (and at the end); 0: only at the end (macro PERIOD).
    keep: keep the newest `keep` checkpoints; None keeps all (macro KEEP_CHECKPOINTS).
    allow_config_change: let a resume go on although the recorded task, feature lengths, batch
      size or model differ (the change is recorded in run_info.json's history).
  """

  period: int = 1000
  keep: int | None = None
  allow_config_change: bool = False

  def __post_init__(self):
    _integer("CheckpointConfig.period (macro PERIOD)", self.period, minimum=0)
    if self.keep is not None:
      _integer("CheckpointConfig.keep (macro KEEP_CHECKPOINTS)", self.keep, minimum=1)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class InitConfig:
  """How a new run's parameters start (ignored when resuming).

  Attributes:
    checkpoint_path: initial checkpoint (project, T5X or Hugging Face folder); None: default init
      (macro INITIAL_CHECKPOINT_PATH).
    transfer_mode: `transfer.transfer_weights` mode (macro TRANSFER_MODE).
    hook: params -> params applied after the above (e.g. `init_stats.apply_initialisation`;
      macro INIT_HOOK).
  """

  checkpoint_path: str | None = None
  transfer_mode: str = "all_but_embedding"
  hook: Callable[[Any], Any] | None = None


@gin.configurable
@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """Teacher-forced validation accuracy during training.

  Attributes:
    period: evaluate every `period` steps and at the end; 0: no teacher-forced evaluation (the
      inference evaluator still runs at the final step) (macro EVAL_PERIOD).
    steps: number of batches of `split` (the first ones, unshuffled); 0: none (macro EVAL_STEPS).
    split: the split evaluated.
  """

  period: int = 1000
  steps: int = 20
  split: str = "validation"

  def __post_init__(self):
    _integer("EvalConfig.period (macro EVAL_PERIOD)", self.period, minimum=0)
    _integer("EvalConfig.steps (macro EVAL_STEPS)", self.steps, minimum=0)


@gin.configurable
def evaluate_teacher_forced(trainer: trainer_lib.Trainer, params: Any,
                            batches: list[dict[str, np.ndarray]]) -> dict[str, float]:
  total = None
  for batch in batches:
    total = trainer_lib.accumulate(total, trainer.eval_step(params, trainer.shard_batch(batch)))
  return trainer_lib.summarize(total) if total is not None else {}


# ---- checks -------------------------------------------------------------------------------------
def _task_vocabularies(task) -> list[tuple[str, str, Any]]:
  """(task name, feature, vocabulary) of every task of `task` (a Task or a Mixture)."""
  tasks = task.tasks if hasattr(task, "tasks") and not hasattr(task, "source") else [task]
  found = []
  for sub in tasks:
    for feature in ("inputs", "targets"):
      if feature in sub.output_features:
        found.append((sub.name, feature, sub.output_features[feature].vocabulary))
  return found


def check_vocabulary_size(model_config: t5.T5Config, task) -> None:
  """Raises VocabularyMismatchError if a task id could fall outside the model's embedding."""
  from synthetic_pretraining.data import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
  for name, feature, vocabulary in _task_vocabularies(task):
    vocab_lib.ensure_available(vocabulary)
    size = vocabulary.vocab_size
    if model_config.vocab_size < size:
      raise VocabularyMismatchError(
          f"the model's vocabulary size {model_config.vocab_size} (gin VOCAB_SIZE, "
          f"t5.T5Config.vocab_size) is smaller than the {size} ids of task {name!r} "
          f"({feature}: {vocab_lib.describe(vocabulary)}); set VOCAB_SIZE to at least {size} "
          f"(T5 pads to a multiple of 128: {vocab_lib.padded_vocab_size(size)}), or give the "
          "tasks a smaller vocabulary (macro VOCABULARY)")


def _describe_run(model_config, dataset: DatasetConfig, train_steps: int, mesh) -> dict:
  return {"mixture_or_task_name": dataset.mixture_or_task_name,
          "task_feature_lengths": dict(dataset.task_feature_lengths),
          "batch_size": dataset.batch_size, "train_steps": train_steps,
          "pack": dataset.pack, "mesh": dict(mesh.shape),
          "model_config": {k: (list(v) if isinstance(v, tuple) else v)
                           for k, v in dataclasses.asdict(model_config).items()}}


def _config_differences(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> dict:
  changed = {}
  for key in COMPATIBILITY_FIELDS:
    if key not in recorded:
      continue
    old, new = json.loads(json.dumps(recorded[key])), json.loads(json.dumps(now[key]))
    if key == "model_config" and isinstance(old, dict):
      diffs = {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
               if old.get(k) != new.get(k)}
      if diffs:
        changed[key] = ({k: v[0] for k, v in diffs.items()}, {k: v[1] for k, v in diffs.items()})
    elif old != new:
      changed[key] = (old, new)
  return changed


def _drop_records_after(model_dir: str, step: int, groups: tuple[str, ...] | None = None,
                        inclusive: bool = False) -> int:
  """Removes metrics records of steps after `step` (or from `step` on) written by an earlier
  start; returns how many. A partial last line (a killed write) is dropped too."""
  path = os.path.join(model_dir, metrics_io.METRICS_FILE)
  if not os.path.exists(path):
    return 0
  with open(path, encoding="utf-8") as f:
    lines = f.read().split("\n")
  kept, dropped = [], 0
  for line in lines:
    if not line.strip():
      continue
    try:
      record = json.loads(line)
      record_step = int(record["step"])
    except (ValueError, KeyError, TypeError):
      dropped += 1  # A half-written line of a killed run.
      continue
    late = record_step >= step if inclusive else record_step > step
    if late and (groups is None or record.get("group") in groups):
      dropped += 1
      continue
    kept.append(line)
  if dropped:
    checkpoints.atomic_write_text(path, "".join(line + "\n" for line in kept))
  return dropped


class _FiniteLossGuard:
  """Checks the training loss of every step at log and checkpoint points (one host sync each)."""

  def __init__(self, enabled: bool):
    self.enabled = enabled
    self.pending: list[tuple[int, Any]] = []

  def add(self, step: int, loss: Any) -> None:
    if self.enabled:
      self.pending.append((step, loss))

  def check(self, last_checkpoint: int | None) -> None:
    if not self.pending:
      return
    values = jax.device_get([loss for _, loss in self.pending])
    for (step, _), value in zip(self.pending, values):
      if not math.isfinite(float(value)):
        raise NonFiniteLossError(
            f"the training loss is {float(value)} at step {step}; the run stopped without "
            f"checkpointing this state (last checkpoint: "
            f"{'none' if last_checkpoint is None else f'step {last_checkpoint}'}). Usual causes: "
            "a learning rate too high for the model, or task ids outside the model's vocabulary. "
            "To let the run go on anyway, bind loop.train.stop_on_nonfinite_loss = False")
    self.pending = []


# ---- the loop -----------------------------------------------------------------------------------
@gin.configurable
def train(*,
          model_dir: str = gin.REQUIRED,
          model_config: t5.T5Config = gin.REQUIRED,
          dataset: DatasetConfig = gin.REQUIRED,
          train_steps: int = gin.REQUIRED,
          checkpointing: CheckpointConfig | None = None,
          loss: trainer_lib.LossConfig | None = None,
          initialization: InitConfig | None = None,
          evaluation: EvalConfig | None = None,
          learning_rate_fn: Callable[[Any], Any] | None = None,
          seed: int = 0,
          num_partitions: int = 1,
          log_period: int = 100,
          stop_on_nonfinite_loss: bool = True,
          labels: Mapping[str, Any] | None = None,
          inference_evaluator: Callable[..., Any] | None = None) -> dict:
  """Trains (or resumes) a run; returns the final teacher-forced validation metrics.

  Args:
    model_dir: the run directory (macro MODEL_DIR).
    model_config: the model (macro MODEL_CONFIG of gin/models/*.gin).
    dataset: the training data.
    train_steps: total steps of the run (macro TRAIN_STEPS).
    checkpointing: default `CheckpointConfig()`.
    loss: default `trainer.LossConfig()`.
    initialization: default `InitConfig()` (default init, no checkpoint).
    evaluation: default `EvalConfig()`.
    learning_rate_fn: step -> rate (default `optim.learning_rate_schedule()`).
    seed: parameter initialisation and dropout seed (macro SEED).
    num_partitions: model-parallel devices (macro NUM_PARTITIONS).
    log_period: steps between progress lines and `train` records (macro LOG_PERIOD).
    stop_on_nonfinite_loss: stop with NonFiniteLossError when the loss is NaN or infinite.
    labels: what the run is in an experiment, e.g. {'method': 'set', 'task': 'mtop', 'seed': 0}
      (macro RUN_LABELS); recorded in run_info.json, read by `synthetic-pretraining results`.
    inference_evaluator: called as `f(trainer=, params=, step=, model_dir=)` at every evaluation
      point, including the final step.

  Returns:
    The teacher-forced validation metrics of the last evaluation ({} if none).
  """
  checkpointing = checkpointing or CheckpointConfig()
  loss = loss or trainer_lib.LossConfig()
  initialization = initialization or InitConfig()
  evaluation = evaluation or EvalConfig()
  if not isinstance(model_dir, (str, os.PathLike)) or not os.fspath(model_dir):
    raise ValueError(f"model_dir (macro MODEL_DIR) must be a folder path, got {model_dir!r}")
  model_dir = os.path.abspath(os.fspath(model_dir))
  train_steps = _integer("train_steps (macro TRAIN_STEPS)", train_steps, minimum=0)
  log_period = _integer("log_period (macro LOG_PERIOD)", log_period, minimum=1)
  seed = _integer("seed (macro SEED)", seed)
  if not isinstance(dataset, DatasetConfig):
    raise ValueError(f"dataset must be a loop.DatasetConfig, got {type(dataset).__name__}")
  labels = dict(labels or {})
  try:
    json.dumps(labels)
  except TypeError:
    raise ValueError(f"labels (macro RUN_LABELS) must be JSON values, got {labels!r}") from None

  partitioning.maybe_initialize_distributed()
  data_input.import_task_modules(dataset.module, dataset.vocabulary)
  task = data_input.get_mixture_or_task(dataset.mixture_or_task_name)
  check_vocabulary_size(model_config, task)
  mesh = partitioning.create_mesh(num_partitions)
  partitioning.check_batch_size(dataset.batch_size, mesh)

  leader = jax.process_index() == 0
  created = not os.path.exists(model_dir)
  before = set() if created else set(os.listdir(model_dir))
  os.makedirs(model_dir, exist_ok=True)
  lock = checkpoints.ModelDirLock(model_dir).acquire() if leader else None
  ckpt = None
  try:
    ckpt = checkpoints.Checkpointer(model_dir, period=checkpointing.period,
                                    keep=checkpointing.keep)
    return _train(model_dir, model_config, dataset, train_steps, checkpointing, loss,
                  initialization, evaluation, learning_rate_fn, seed, log_period,
                  stop_on_nonfinite_loss, inference_evaluator, task, mesh, ckpt, labels)
  except BaseException:
    if ckpt is not None:
      _close_quietly(ckpt)
    if leader and not _has_checkpoints(model_dir):
      _remove_skeleton(model_dir, created, before)
    raise
  finally:
    if lock is not None:
      lock.release()


def _close_quietly(ckpt: checkpoints.Checkpointer) -> None:
  try:
    ckpt.close()
  except Exception:  # pylint: disable=broad-except  (already failing; keep the first error)
    pass


def _has_checkpoints(model_dir: str) -> bool:
  return bool(checkpoints.saved_steps(model_dir))


def _remove_skeleton(model_dir: str, created: bool, before: set[str]) -> None:
  """Removes what a failed run created before its first checkpoint (never older files)."""
  if created:
    checkpoints.remove_tree(model_dir)
    return
  for name in set(os.listdir(model_dir)) - before:
    path = os.path.join(model_dir, name)
    if name == checkpoints.LOCK_FILE:
      continue  # Released (and removed) by the lock itself.
    if os.path.isdir(path):
      checkpoints.remove_tree(path)
    else:
      os.unlink(path)


def _train(model_dir, model_config, dataset, train_steps, checkpointing, loss, initialization,
           evaluation, learning_rate_fn, seed, log_period, stop_on_nonfinite_loss,
           inference_evaluator, task, mesh, ckpt, labels) -> dict:
  name = dataset.mixture_or_task_name
  lengths = dict(dataset.task_feature_lengths)
  batch_size = dataset.batch_size
  description = _describe_run(model_config, dataset, train_steps, mesh)
  description["labels"] = labels
  recorded = checkpoints.read_run_info(model_dir)
  changed = {}
  if recorded and ckpt.all_steps():
    changed = _config_differences(recorded, description)
    if changed and not checkpointing.allow_config_change:
      listing = "; ".join(f"{k}: recorded {v[0]!r}, now {v[1]!r}" for k, v in changed.items())
      raise RunConfigMismatchError(
          f"model dir {model_dir} holds checkpoints of a different run ({listing}); use another "
          "MODEL_DIR, or bind loop.CheckpointConfig.allow_config_change = True to resume anyway")
  lr_fn = learning_rate_fn or optim.learning_rate_schedule()
  trainer = trainer_lib.Trainer(model_config, optim.adafactor(lr_fn), mesh, seed=seed,
                                loss_config=loss, learning_rate_fn=lr_fn)

  # ---- state: resume > initial checkpoint > fresh init --------------------------------------
  fresh = trainer.create_state()
  resumed = ckpt.restore_latest(fresh.as_dict(), warn=_log)
  if resumed is not None:
    step, restored = resumed
    state = trainer_lib.TrainState.from_dict(restored)
    _log(f"resumed from {ckpt.directory}/{step}")
  else:
    params = fresh.params
    if initialization.checkpoint_path:
      from synthetic_pretraining.train import transfer  # pylint: disable=g-import-not-at-top
      loaded = checkpoints.load_params(initialization.checkpoint_path)
      params = transfer.transfer_weights(jax.device_get(params), loaded,
                                         initialization.transfer_mode)
      _log(f"initialised from {initialization.checkpoint_path} (transfer mode "
           f"{initialization.transfer_mode})")
    if initialization.hook is not None:
      params = initialization.hook(jax.device_get(params))
    state = fresh if params is fresh.params else trainer.create_state(params)
  del fresh
  start_step = int(state.step)
  if jax.process_index() == 0:
    checkpoints.atomic_write_text(os.path.join(model_dir, checkpoints.CONFIG_FILE),
                                  gin.config_str())
    checkpoints.record_run_start(model_dir, description, start_step, changed)
    dropped = _drop_records_after(model_dir, start_step)
    if dropped:
      _log(f"dropped {dropped} metrics record(s) of steps after {start_step} written by the "
           "interrupted run (they are recomputed)")

  # ---- data -----------------------------------------------------------------------------------
  train_ds = data_input.get_dataset(
      name, lengths, "train", batch_size, shuffle=dataset.shuffle, seed=dataset.seed,
      pack=dataset.pack, num_epochs=None, skip_batches=start_step, autotune=dataset.autotune)
  eval_batches = None
  if evaluation.period > 0 and evaluation.steps > 0 and evaluation.split in _splits(task):
    eval_ds = data_input.get_dataset(name, lengths, evaluation.split, batch_size, shuffle=False,
                                     seed=dataset.seed, pack=dataset.pack, num_epochs=1,
                                     autotune=dataset.autotune)
    eval_batches = list(eval_ds.take(evaluation.steps).as_numpy_iterator())
    if not eval_batches:
      raise ValueError(f"the {evaluation.split!r} split of {name} gave no full batch of "
                       f"{batch_size}; lower the batch size or set EVAL_STEPS = 0")

  writer = metric_writers.create_default_writer(
      os.path.join(model_dir, "tensorboard"), just_logging=jax.process_index() > 0)
  tokens_per_step = batch_size * lengths["targets"]
  flops_per_token = flops.model_flops_per_token(model_config, lengths["inputs"],
                                                lengths["targets"])

  def run_evals(step: int) -> dict:
    results = {}
    if eval_batches:
      results = evaluate_teacher_forced(trainer, state.params, eval_batches)
      _log(f"[eval] step {step}: {evaluation.split} token accuracy {results['accuracy']:.4f}, "
           f"loss/token {results['loss']:.4f}")
      if jax.process_index() == 0:
        metrics_io.append(model_dir, step, "training_eval", name, results)
        writer.write_scalars(step, {f"training_eval/{k}": v for k, v in results.items()})
    if inference_evaluator is not None:
      inference_evaluator(trainer=trainer, params=state.params, step=step, model_dir=model_dir)
    return results

  # ---- loop -----------------------------------------------------------------------------------
  if start_step >= train_steps:
    _log(f"model dir {model_dir} already holds step {start_step} ≥ train_steps {train_steps}")
    final = {}
    if eval_batches:  # As before: a finished run is re-evaluated only with validation batches.
      if jax.process_index() == 0:  # Re-evaluated: keep one record per step and group.
        _drop_records_after(model_dir, start_step, groups=("training_eval", "inference_eval",
                                                           "test_eval"), inclusive=True)
      final = run_evals(start_step)
    ckpt.close()
    return final
  _log(f"training {name} for {train_steps} steps (batch {batch_size}, lengths {lengths}, "
       f"{t5.count_params(state.params):,} params, mesh {dict(mesh.shape)}) in {model_dir}")
  guard = _FiniteLossGuard(stop_on_nonfinite_loss)
  data_iter = train_ds.as_numpy_iterator()
  window, window_start = [], time.time()  # device metrics; fetched only when logging
  final = {}
  last_saved = ckpt.latest_step()
  for step in range(start_step, train_steps):
    try:
      batch = next(data_iter)
    except StopIteration:
      raise ValueError(f"the train split of {name} ran out of data at step {step}") from None
    state, metrics = trainer.train_step(state, trainer.shard_batch(batch))
    window.append(metrics)
    done = step + 1
    guard.add(done, metrics["loss"])
    is_last = done == train_steps
    if done % log_period == 0 or is_last:
      guard.check(last_saved)
      elapsed = time.time() - window_start
      window_steps = len(window)
      totals = None
      for step_metrics in jax.device_get(window):
        totals = trainer_lib.accumulate(totals, step_metrics)
      summary = trainer_lib.summarize(totals)
      summary["learning_rate"] = float(metrics["learning_rate"])
      summary["steps_per_sec"] = window_steps / elapsed
      summary["tokens_per_sec"] = window_steps * tokens_per_step / elapsed
      summary["model_flops_per_sec"] = summary["tokens_per_sec"] * flops_per_token
      _log(f"step {done}: loss {summary['loss']:.4f} accuracy {summary['accuracy']:.4f} "
           f"lr {summary['learning_rate']:.2e} {summary['steps_per_sec']:.2f} steps/s "
           f"{summary['tokens_per_sec']:.0f} tokens/s")
      if jax.process_index() == 0:
        metrics_io.append(model_dir, done, "train", name, summary)
        writer.write_scalars(done, {f"train/{k}": v for k, v in summary.items()})
      window, window_start = [], time.time()
    if (evaluation.period > 0 and done % evaluation.period == 0) or is_last:
      final = run_evals(done)
    if is_last or (checkpointing.period > 0 and done % checkpointing.period == 0):
      guard.check(last_saved)  # Never checkpoint a state whose loss was not finite.
      if ckpt.save(done, state.as_dict(), force=is_last):
        last_saved = done
  ckpt.close()
  writer.flush()
  _log(f"done: step {train_steps}; checkpoints in {ckpt.directory}; metrics in "
       f"{os.path.join(model_dir, metrics_io.METRICS_FILE)}")
  return final


def _splits(task) -> list[str]:
  try:
    return list(task.splits)
  except (AttributeError, NotImplementedError):
    return []
