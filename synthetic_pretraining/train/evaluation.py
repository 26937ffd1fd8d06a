"""Inference evaluation (decode → postprocess → task metrics) with seqio's Evaluator, and `evaluate`.

`InferenceEvaluator` is what a fine-tuning run calls at every evaluation period: seqio builds and
caches the split once, our `predict_fn` decodes it (beam search with a KV cache, or greedy), seqio
postprocesses and scores with the task's metric functions and writes a few examples per step
(JSON_WRITE_N_RESULTS, as T5X) under `MODEL_DIR/inference_eval/`; the scores also go to
`metrics.jsonl` (group "inference_eval") for the results tooling.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import gin
import jax
import numpy as np
import seqio

from synthetic_pretraining.train import data_input
from synthetic_pretraining.train import metrics_io


@gin.configurable
class InferenceEvaluator:
  """Decodes a split of a task (or every task of a mixture) and computes its metrics."""

  def __init__(self, mixture_or_task_name: str = gin.REQUIRED,
               task_feature_lengths: Mapping[str, int] = gin.REQUIRED, split: str = "test",
               num_examples: int | None = None, batch_size: int = 32, beam_size: int = 4,
               alpha: float = 0.6, max_decode_length: int | None = None,
               write_n_results: int = 3, seed: int = 42):
    self.name = mixture_or_task_name
    self.lengths = dict(task_feature_lengths)
    self.split = split
    self.num_examples = num_examples
    self.batch_size = batch_size
    self.beam_size = beam_size
    self.alpha = alpha
    self.max_decode_length = max_decode_length or self.lengths["targets"]
    self.write_n_results = write_n_results
    self.seed = seed
    self._evaluators: dict[str, seqio.Evaluator] = {}

  def _evaluator(self, model_dir: str) -> seqio.Evaluator:
    if model_dir not in self._evaluators:
      log_dir = os.path.join(model_dir, "inference_eval")
      os.makedirs(log_dir, exist_ok=True)
      loggers = [_example_logger(self.write_n_results)] if jax.process_index() == 0 else []
      self._evaluators[model_dir] = seqio.Evaluator(
          mixture_or_task_name=self.name,
          feature_converter=data_input.feature_converter(pack=False), eval_split=self.split,
          use_cached=False, seed=self.seed, sequence_length=self.lengths,
          num_examples=self.num_examples, shuffle=False, logger_cls=loggers, log_dir=log_dir)
    return self._evaluators[model_dir]

  def predict_fn(self, trainer, params):
    """seqio predict_fn: enumerated feature dataset → [(index, output ids)]."""
    from synthetic_pretraining.train import decoding  # pylint: disable=g-import-not-at-top

    def predict(ds) -> list[tuple[int, list[int]]]:
      outputs = []
      for indices, features in ds.batch(self.batch_size).as_numpy_iterator():
        tokens = np.asarray(features["encoder_input_tokens"], np.int32)
        real = len(tokens)
        if real < self.batch_size:  # Pad the last batch to keep one compiled shape.
          tokens = np.concatenate(
              [tokens, np.zeros((self.batch_size - real,) + tokens.shape[1:], np.int32)])
        decoded = decoding.decode_tokens(trainer.model, params, tokens, self.max_decode_length,
                                         beam_size=self.beam_size, alpha=self.alpha)
        for index, ids in zip(indices[:real], decoded[:real]):
          # seqio stacks the predictions into one array: pad them (after EOS) to one length.
          ids = list(ids)[:self.max_decode_length]
          outputs.append((int(index), ids + [0] * (self.max_decode_length - len(ids))))
      return outputs

    return predict

  def __call__(self, *, trainer, params, step: int, model_dir: str) -> dict[str, dict[str, float]]:
    evaluator = self._evaluator(model_dir)
    with jax.set_mesh(trainer.mesh):
      all_metrics, _ = evaluator.evaluate(compute_metrics=jax.process_index() == 0, step=step,
                                          predict_fn=self.predict_fn(trainer, params))
    if jax.process_index() != 0:
      return {}
    results = all_metrics.result() if hasattr(all_metrics, "result") else all_metrics
    for task_name, values in results.items():
      scalars = {k: float(getattr(v, "value", v)) for k, v in values.items() if _is_number(v)}
      metrics_io.append(model_dir, step, "inference_eval", task_name, scalars)
      print(f"[infer] step {step} {task_name}: " +
            ", ".join(f"{k} {v:.3f}" for k, v in sorted(scalars.items())), flush=True)
    return results


def _is_number(value: Any) -> bool:
  value = getattr(value, "value", value)  # clu/seqio Scalar wrappers
  try:
    float(value)
    return True
  except (TypeError, ValueError):
    return False


def _example_logger(n: int):
  class _JSONLogger(seqio.JSONLogger):

    def __init__(self, output_dir):
      super().__init__(output_dir, write_n_results=n)

  return _JSONLogger


@gin.configurable
def evaluate(*, model_config=gin.REQUIRED, checkpoint_path: str = gin.REQUIRED,
             model_dir: str = gin.REQUIRED, mixture_or_task_name: str = gin.REQUIRED,
             task_feature_lengths: Mapping[str, int] = gin.REQUIRED, batch_size: int = 32,
             mixture_or_task_module: str | None = "synthetic_pretraining.tasks",
             eval_split: str = "validation", eval_steps: int = 20, num_partitions: int = 1,
             inference_evaluator: InferenceEvaluator | None = None) -> dict:
  """Evaluates one checkpoint: teacher-forced accuracy on `eval_split` and, if given, decoding."""
  # pylint: disable=g-import-not-at-top
  import optax
  from synthetic_pretraining.train import checkpoints, partitioning
  from synthetic_pretraining.train import loop, trainer as trainer_lib
  partitioning.maybe_initialize_distributed()
  data_input.import_task_modules(mixture_or_task_module)
  mesh = partitioning.create_mesh(num_partitions)
  trainer = trainer_lib.Trainer(model_config, optax.identity(), mesh)
  loaded = checkpoints.load_params(checkpoint_path)
  checkpoints.check_compatible(jax.device_get(trainer.init_params()), loaded, checkpoint_path)
  params = trainer.create_state(loaded).params
  step = _checkpoint_step(checkpoint_path)
  ds = data_input.get_dataset(mixture_or_task_name, task_feature_lengths, eval_split, batch_size,
                              shuffle=False, seed=42, pack=False, num_epochs=1)
  results = {"teacher_forced": loop.evaluate_teacher_forced(
      trainer, params, list(ds.take(eval_steps).as_numpy_iterator()))}
  if jax.process_index() == 0:
    metrics_io.append(model_dir, step, "training_eval", mixture_or_task_name,
                      results["teacher_forced"])
    print(f"[eval] {checkpoint_path} step {step}: {results['teacher_forced']}", flush=True)
  if inference_evaluator is not None:
    results["inference"] = inference_evaluator(trainer=trainer, params=params, step=step,
                                               model_dir=model_dir)
  return results


def _checkpoint_step(path: str) -> int:
  """The step of the checkpoint `path` resolves to (…/checkpoints/<step>, checkpoint_<step>)."""
  from synthetic_pretraining.train import checkpoints  # pylint: disable=g-import-not-at-top
  try:
    path = os.path.dirname(checkpoints._resolve_step_dir(path))  # pylint: disable=protected-access
  except FileNotFoundError:
    pass  # T5X layouts: the step is in the directory name.
  name = os.path.basename(os.path.normpath(path))
  digits = name.split("_")[-1]
  return int(digits) if digits.isdigit() else 0
