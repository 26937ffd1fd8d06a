"""The gin-bound training and evaluation loop (T5X's `train_script.train`, much smaller).

One call trains `model_config` on a SeqIO mixture or task for `train_steps` steps:
resumes from the newest checkpoint in `model_dir` if there is one (otherwise optionally starts
from `initial_checkpoint_path` with a weight-transfer mode, and applies an initialisation hook),
logs progress lines, evaluates teacher-forced token accuracy on the validation split every
`eval_period` steps (and, for tasks with metrics, decodes and scores them), writes TensorBoard
summaries and `metrics.jsonl`, and checkpoints every `checkpoint_period` steps and at the end.
"""

from __future__ import annotations

import json
import logging
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


def _log(message: str) -> None:
  if jax.process_index() == 0:
    print(message, flush=True)


@gin.configurable
def evaluate_teacher_forced(trainer: trainer_lib.Trainer, params: Any,
                            batches: list[dict[str, np.ndarray]]) -> dict[str, float]:
  total = None
  for batch in batches:
    total = trainer_lib.accumulate(total, trainer.eval_step(params, trainer.shard_batch(batch)))
  return trainer_lib.summarize(total) if total is not None else {}


@gin.configurable
def train(*,
          model_dir: str = gin.REQUIRED,
          model_config: t5.T5Config = gin.REQUIRED,
          mixture_or_task_name: str = gin.REQUIRED,
          task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
          train_steps: int = gin.REQUIRED,
          batch_size: int = gin.REQUIRED,
          mixture_or_task_module: str | None = "synthetic_pretraining.tasks",
          vocabulary: Any = None,
          learning_rate_fn: Callable[[Any], Any] | None = None,
          seed: int = 0,
          data_seed: int = 42,
          pack: bool = False,
          shuffle: bool = True,
          num_partitions: int = 1,
          log_period: int = 100,
          eval_period: int = 1000,
          eval_steps: int = 20,
          eval_split: str = "validation",
          checkpoint_period: int = 1000,
          keep_checkpoints: int | None = None,
          z_loss: float = 1e-4,
          label_smoothing: float = 0.0,
          initial_checkpoint_path: str | None = None,
          transfer_mode: str = "all_but_embedding",
          init_hook: Callable[[Any], Any] | None = None,
          inference_evaluator: Callable[..., Any] | None = None) -> dict:
  """Trains (or resumes) a run; returns the final teacher-forced validation metrics."""
  if train_steps < 0 or batch_size <= 0:
    raise ValueError(f"train_steps ({train_steps}) must be ≥ 0 and batch_size ({batch_size}) > 0")
  partitioning.maybe_initialize_distributed()
  data_input.import_task_modules(mixture_or_task_module, vocabulary)
  task = data_input.get_mixture_or_task(mixture_or_task_name)
  os.makedirs(model_dir, exist_ok=True)

  mesh = partitioning.create_mesh(num_partitions)
  partitioning.check_batch_size(batch_size, mesh)
  lr_fn = learning_rate_fn or optim.learning_rate_schedule()
  trainer = trainer_lib.Trainer(
      model_config, optim.adafactor(lr_fn), mesh, seed=seed,
      loss_config=trainer_lib.LossConfig(z_loss=z_loss, label_smoothing=label_smoothing),
      learning_rate_fn=lr_fn)
  ckpt = checkpoints.Checkpointer(model_dir, period=checkpoint_period, keep=keep_checkpoints)

  # ---- state: resume > initial checkpoint > fresh init --------------------------------------
  fresh = trainer.create_state()
  latest = ckpt.latest_step()
  if latest is not None:
    state = trainer_lib.TrainState.from_dict(ckpt.restore(latest, fresh.as_dict()))
    _log(f"resumed from {ckpt.directory}/{latest}")
  else:
    params = fresh.params
    if initial_checkpoint_path:
      from synthetic_pretraining.train import transfer  # pylint: disable=g-import-not-at-top
      loaded = checkpoints.load_params(initial_checkpoint_path)
      params = transfer.transfer_weights(jax.device_get(params), loaded, transfer_mode)
      _log(f"initialised from {initial_checkpoint_path} (transfer mode {transfer_mode})")
    if init_hook is not None:
      params = init_hook(jax.device_get(params))
    state = fresh if params is fresh.params else trainer.create_state(params)
  del fresh
  start_step = int(state.step)
  _write_run_config(model_dir, model_config, mixture_or_task_name, task_feature_lengths,
                    batch_size, train_steps, mesh)

  # ---- data -----------------------------------------------------------------------------------
  train_ds = data_input.get_dataset(
      mixture_or_task_name, task_feature_lengths, "train", batch_size, shuffle=shuffle,
      seed=data_seed, pack=pack, num_epochs=None, skip_batches=start_step)
  eval_batches = None
  if eval_period > 0 and eval_steps > 0 and eval_split in _splits(task):
    eval_ds = data_input.get_dataset(mixture_or_task_name, task_feature_lengths, eval_split,
                                     batch_size, shuffle=False, seed=data_seed, pack=pack,
                                     num_epochs=1)
    eval_batches = list(eval_ds.take(eval_steps).as_numpy_iterator())
    if not eval_batches:
      raise ValueError(f"the {eval_split!r} split of {mixture_or_task_name} gave no full batch "
                       f"of {batch_size}; lower the batch size or set eval_steps = 0")

  writer = metric_writers.create_default_writer(
      os.path.join(model_dir, "tensorboard"), just_logging=jax.process_index() > 0)
  tokens_per_step = batch_size * task_feature_lengths["targets"]
  flops_per_token = flops.model_flops_per_token(model_config, task_feature_lengths["inputs"],
                                           task_feature_lengths["targets"])

  def run_evals(step: int) -> dict:
    results = {}
    if eval_batches:
      results = evaluate_teacher_forced(trainer, state.params, eval_batches)
      _log(f"[eval] step {step}: {eval_split} token accuracy {results['accuracy']:.4f}, "
           f"loss/token {results['loss']:.4f}")
      if jax.process_index() == 0:
        metrics_io.append(model_dir, step, "training_eval", mixture_or_task_name, results)
        writer.write_scalars(step, {f"training_eval/{k}": v for k, v in results.items()})
    if inference_evaluator is not None:
      inference_evaluator(trainer=trainer, params=state.params, step=step, model_dir=model_dir)
    return results

  # ---- loop -----------------------------------------------------------------------------------
  if start_step >= train_steps:
    _log(f"model dir {model_dir} already holds step {start_step} ≥ train_steps {train_steps}")
    final = run_evals(start_step) if eval_batches else {}
    ckpt.close()
    return final
  _log(f"training {mixture_or_task_name} for {train_steps} steps (batch {batch_size}, lengths "
       f"{dict(task_feature_lengths)}, {t5.count_params(state.params):,} params, mesh "
       f"{dict(mesh.shape)}) in {model_dir}")
  data_iter = train_ds.as_numpy_iterator()
  window, window_start = [], time.time()  # device metrics; fetched only when logging
  final = {}
  for step in range(start_step, train_steps):
    try:
      batch = next(data_iter)
    except StopIteration:
      raise ValueError(f"the train split of {mixture_or_task_name} ran out of data at step "
                       f"{step}") from None
    state, metrics = trainer.train_step(state, trainer.shard_batch(batch))
    window.append(metrics)
    done = step + 1
    if done % log_period == 0 or done == train_steps:
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
        metrics_io.append(model_dir, done, "train", mixture_or_task_name, summary)
        writer.write_scalars(done, {f"train/{k}": v for k, v in summary.items()})
      window, window_start = [], time.time()
    is_last = done == train_steps
    if (eval_period > 0 and done % eval_period == 0) or is_last:
      final = run_evals(done)
    ckpt.save(done, state.as_dict(), force=is_last)
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


def _write_run_config(model_dir, model_config, name, lengths, batch_size, steps, mesh) -> None:
  if jax.process_index() != 0:
    return
  path = os.path.join(model_dir, "config.gin")
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    f.write(gin.config_str())
  os.replace(path + ".tmp", path)
  info = {"mixture_or_task_name": name, "task_feature_lengths": dict(lengths),
          "batch_size": batch_size, "train_steps": steps, "mesh": dict(mesh.shape),
          "model_config": {k: (list(v) if isinstance(v, tuple) else v)
                           for k, v in model_config.__dict__.items()}}
  with open(os.path.join(model_dir, "run_info.json.tmp"), "w", encoding="utf-8") as f:
    json.dump(info, f, indent=1)
  os.replace(os.path.join(model_dir, "run_info.json.tmp"), os.path.join(model_dir,
                                                                          "run_info.json"))
