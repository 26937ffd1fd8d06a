"""SeqIO preprocessors that work on batches of examples (same output as seqio's per-example ones).

On CPU a tf.data function call per example costs tens of microseconds whatever it computes, so
per-example maps bound a streamed pipeline (see `bench_pipeline`). `append_eos_after_trim` here
groups examples with `ragged_batch`, trims and appends EOS on whole ragged batches in one call, and
unbatches again: the dataset it returns equals `seqio.preprocessors.append_eos_after_trim`'s,
example for example (tests/data/test_preprocessors.py).
"""

from __future__ import annotations

import functools
from typing import Mapping, Optional

import seqio
import tensorflow as tf

DEFAULT_BATCH_SIZE = 256


def append_eos_after_trim(dataset: tf.data.Dataset,
                          output_features: Mapping[str, seqio.Feature],
                          sequence_length: Optional[Mapping[str, Optional[int]]] = None,
                          batch_size: int = DEFAULT_BATCH_SIZE) -> tf.data.Dataset:
  """Trims each `add_eos` feature to sequence_length - 1 and appends EOS, `batch_size` at a time.

  Args:
    dataset: examples whose `add_eos` features are rank-1 id vectors.
    output_features: the Task's features (their `add_eos` and vocabulary EOS id).
    sequence_length: feature lengths (None, or a missing/None entry: no trimming).
    batch_size: examples per internal batch (does not change the output).

  Returns:
    The same examples as `seqio.preprocessors.append_eos_after_trim` gives, in the same order.
  """
  spec = dataset.element_spec
  keys = [k for k, f in output_features.items() if f.add_eos and k in spec]
  if not keys:
    return dataset
  for key in keys:
    if spec[key].shape.rank != 1:
      raise ValueError(f"append_eos_after_trim: feature {key!r} has rank {spec[key].shape.rank}, "
                       "the batched version needs rank-1 id vectors")

  def add_eos(batch):
    batch = dict(batch)
    for key in keys:
      value = batch[key]
      if not isinstance(value, tf.RaggedTensor):  # Fixed-length vectors batch densely.
        value = tf.RaggedTensor.from_tensor(value)
      limit = (sequence_length or {}).get(key)
      if limit is not None:
        value = value[:, :limit - 1]
      eos = tf.fill([value.nrows(), 1], tf.constant(output_features[key].vocabulary.eos_id,
                                                    value.dtype))
      batch[key] = tf.concat([value, tf.cast(eos, value.dtype)], axis=1)
    return batch

  # Ragged (streamed sources) and fixed-shape features batch natively; variable-length dense
  # vectors need ragged_batch, which converts every example with a per-example map (slower).
  natively = all(isinstance(s, tf.RaggedTensorSpec) or s.shape.is_fully_defined()
                 for s in tf.nest.flatten(spec))
  batched = dataset.batch(batch_size) if natively else dataset.ragged_batch(batch_size)
  return batched.map(add_eos, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()


def _base_function(preprocessor):
  while isinstance(preprocessor, functools.partial):
    preprocessor = preprocessor.func
  return preprocessor


def output_is_trimmed(task_or_mixture: seqio.Task | seqio.Mixture) -> bool:
  """Whether seqio's own output trimming would be a no-op for every task of `task_or_mixture`.

  True when each task's last preprocessor is this module's `append_eos_after_trim` and every
  output feature has add_eos (so every feature is already cut to its sequence length). Then
  `seqio.get_dataset(..., trim_output_features=False)` gives the same examples without seqio's
  per-example trimming map.
  """
  tasks = seqio.get_subtasks(task_or_mixture)  # The leaf tasks (of nested mixtures too).
  return all(
      task.preprocessors and _base_function(task.preprocessors[-1]) is append_eos_after_trim
      and all(f.add_eos for f in task.output_features.values())
      for task in tasks)
