"""Inference evaluation (decode → postprocess → task metrics) with seqio's Evaluator, and `evaluate`.

`InferenceEvaluator` is what a fine-tuning run calls at every evaluation period: seqio builds and
caches the split once, our `predict_fn` decodes it (beam search with a KV cache, or greedy), seqio
postprocesses and scores with the task's metric functions and writes a few examples per step
(JSON_WRITE_N_RESULTS, as T5X) under `MODEL_DIR/inference_eval/`; the scores also go to
`metrics.jsonl` (group "inference_eval") for the results tooling.
"""

from __future__ import annotations

import os
import time
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


@gin.configurable
class TestSetEvaluator:
  """At the run's last step: per-example teacher-forced loss on a whole split, and greedy decoding.

  Called by the training loop at every evaluation point; acts only at `final_step`. Writes
  `<model_dir>/test_eval.npz` with, per example of the split in file order, the summed target
  cross-entropy (nats, no z-loss, no label smoothing) `loss_sum`, the number of target tokens
  (EOS included) `num_tokens`, and, when `decode` is set, the greedy predictions `predictions`
  (decoded text) — the mini-study's raw material for paired statistics — then appends the split's
  loss per target token and token accuracy to metrics.jsonl (group "test_eval"), with the wall
  seconds the evaluation took (`seconds`, of which greedy decoding `decode_seconds`).
  """

  def __init__(self, mixture_or_task_name: str = gin.REQUIRED,
               task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
               final_step: int = gin.REQUIRED, split: str = "test", batch_size: int = 100,
               decode: bool = True, max_decode_length: int | None = None):
    self.name = mixture_or_task_name
    self.lengths = dict(task_feature_lengths)
    self.final_step = final_step
    self.split = split
    self.batch_size = batch_size
    self.decode = decode
    self.max_decode_length = max_decode_length or self.lengths["targets"]

  def features(self) -> tuple[dict[str, np.ndarray], int]:
    """The split's model features, in file order, padded to whole batches; and the real count."""
    task = seqio.get_mixture_or_task(self.name)
    ds = task.get_dataset(self.lengths, split=self.split, shuffle=False, num_epochs=1,
                          use_cached=False, seed=0)
    converter = data_input.feature_converter(pack=False)
    # No stall when the iterator is deleted (data_input.get_dataset).
    ds = data_input.with_autotune(converter(ds, self.lengths), False)
    rows = list(ds.as_numpy_iterator())
    if not rows:
      raise ValueError(f"the {self.split!r} split of {self.name} is empty")
    count = len(rows)
    padded = -(-count // self.batch_size) * self.batch_size
    keys = [k for k in rows[0] if k in ("encoder_input_tokens", "decoder_input_tokens",
                                        "decoder_target_tokens", "decoder_loss_weights")]
    features = {k: np.zeros((padded,) + rows[0][k].shape, rows[0][k].dtype) for k in keys}
    for i, row in enumerate(rows):
      for k in keys:
        features[k][i] = row[k]
    return features, count

  def __call__(self, *, trainer, params, step: int, model_dir: str) -> dict[str, float]:
    if step != self.final_step:
      return {}
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    started = time.time()
    decode_seconds = 0.0
    features, count = self.features()

    def per_example(params, batch):
      logits = trainer.model.apply(
          {"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
          batch["decoder_target_tokens"], deterministic=True).astype(jnp.float32)
      targets = batch["decoder_target_tokens"]
      weights = batch["decoder_loss_weights"].astype(jnp.float32)
      log_z = jax.nn.logsumexp(logits, axis=-1)
      picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
      loss = jnp.sum((log_z - picked) * weights, axis=-1)
      correct = jnp.sum((jnp.argmax(logits, -1) == targets) * weights, axis=-1)
      return loss, correct, jnp.sum(weights, axis=-1)

    fn = jax.jit(per_example)
    host_params = jax.device_get(params)
    losses, corrects, tokens, predictions = [], [], [], []
    vocabulary = seqio.get_mixture_or_task(self.name).output_features["targets"].vocabulary
    for start in range(0, len(features["encoder_input_tokens"]), self.batch_size):
      batch = {k: v[start:start + self.batch_size] for k, v in features.items()}
      loss, correct, num = jax.device_get(fn(host_params, batch))
      losses.append(loss), corrects.append(correct), tokens.append(num)
      if self.decode:
        from synthetic_pretraining.train import decoding  # pylint: disable=g-import-not-at-top
        decode_start = time.time()
        ids = decoding.decode_tokens(trainer.model, host_params, batch["encoder_input_tokens"],
                                     self.max_decode_length, beam_size=1)
        predictions += [vocabulary.decode([int(i) for i in row]) for row in ids]
        decode_seconds += time.time() - decode_start
    loss_sum = np.concatenate(losses)[:count].astype(np.float64)
    num_tokens = np.concatenate(tokens)[:count].astype(np.float64)
    correct = np.concatenate(corrects)[:count].astype(np.float64)
    out = {"loss_sum": loss_sum, "num_tokens": num_tokens, "correct": correct}
    if self.decode:
      out["predictions"] = np.asarray(predictions[:count], dtype=object)
    from synthetic_pretraining.train import checkpoints  # pylint: disable=g-import-not-at-top
    with checkpoints.atomic_output(os.path.join(model_dir, "test_eval.npz"), "wb") as f:
      np.savez(f, **{k: (v.astype(str) if v.dtype == object else v) for k, v in out.items()})
    summary = {"loss": float(loss_sum.sum() / num_tokens.sum()),
               "accuracy": float(correct.sum() / num_tokens.sum()), "num_examples": count,
               "seconds": time.time() - started, "decode_seconds": decode_seconds}
    if jax.process_index() == 0:
      metrics_io.append(model_dir, step, "test_eval", self.name, summary)
    print(f"[test] step {step} {self.name}: loss/token {summary['loss']:.4f} accuracy "
          f"{summary['accuracy']:.4f} ({count} examples)", flush=True)
    return summary
