"""SeqIO datasets → host-local numpy batches for the trainer (encoder-decoder model features).

Features are converted by `feature_converter(pack)`: by default our vectorised
`BatchedEncDecFeatureConverter`, which gives exactly seqio.EncDecFeatureConverter's output at
a fraction of the per-example cost; gin `feature_converter.cls = @seqio.EncDecFeatureConverter`
selects seqio's own.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Iterator, Mapping

import gin
import jax
import numpy as np
import seqio
import tensorflow as tf

from synthetic_pretraining.data import feature_converters


def import_task_modules(modules: str | list[str] | tuple[str, ...] | None,
                        vocabulary: seqio.Vocabulary | None = None) -> None:
  """Imports the modules that register SeqIO tasks (T5X's MIXTURE_OR_TASK_MODULE).

  Args:
    modules: module name(s); None or empty: nothing to import.
    vocabulary: if given, each module that defines `register_all(vocabulary)` (as
      `synthetic_pretraining.tasks` does) re-registers its tasks for it, whatever was registered
      at its first import (the run files pass the gin-bound `vocab.task_vocabulary()`).
  """
  if not modules:
    return
  for name in [modules] if isinstance(modules, str) else modules:
    module = importlib.import_module(name)
    register = getattr(module, "register_all", None)
    if vocabulary is not None and callable(register):
      register(vocabulary)


def get_mixture_or_task(name: str) -> seqio.Task | seqio.Mixture:
  try:
    return seqio.get_mixture_or_task(name)
  except ValueError:
    known = sorted(seqio.MixtureRegistry.names()) + sorted(seqio.TaskRegistry.names())
    raise ValueError(f"no SeqIO task or mixture named {name!r}; registered: {known}") from None


@gin.configurable(module="synthetic_pretraining")
def feature_converter(pack: bool, cls: type[seqio.FeatureConverter] = (
    feature_converters.BatchedEncDecFeatureConverter)) -> seqio.FeatureConverter:
  """The encoder-decoder feature converter of training and evaluation datasets.

  Args:
    pack: pack examples into rows.
    cls: a `seqio.EncDecFeatureConverter`-compatible class (gin-selectable).

  Returns:
    `cls(pack=pack)`.
  """
  return cls(pack=pack)


def host_batch_size(global_batch_size: int) -> int:
  if global_batch_size % jax.process_count():
    raise ValueError(f"batch size {global_batch_size} is not divisible by the number of "
                     f"processes {jax.process_count()}")
  return global_batch_size // jax.process_count()


def get_dataset(mixture_or_task_name: str, task_feature_lengths: Mapping[str, int], split: str,
                global_batch_size: int, *, shuffle: bool, seed: int, pack: bool,
                num_epochs: int | None = None, skip_batches: int = 0,
                autotune: bool = False) -> tf.data.Dataset:
  """This host's shard of `split`, converted to model features and batched.

  Each process reads shard `process_index` of `process_count`; with a fixed seed the order is
  deterministic, and `skip_batches` resumes a stream where a checkpointed run left it.

  `autotune` switches tf.data's autotuning on (`tf.data.Options().autotune.enabled`). Off by
  default: its model thread sleeps between optimisation passes (the period doubles up to 60 s),
  and deleting an iterator waits for that sleep to end, so every training run stalled for up to
  a minute after its last step (measured in the mini-study: 0-42 s per run, 4.7 worker-minutes in
  63 runs). Autotuning changes parallelism and buffer sizes only, never the examples or their
  order; without it AUTOTUNE parallelism falls back to tf.data's static defaults, which kept the
  study's pipelines at ~150 batches/s on one thread, far above the model's steps/s.
  """
  task = get_mixture_or_task(mixture_or_task_name)
  shard = seqio.ShardInfo(index=jax.process_index(), num_shards=jax.process_count())
  batch_size = host_batch_size(global_batch_size)
  jump = bool(skip_batches) and resumes_by_index(task, split, pack)
  starting = (task.source.starting_at(batch_size * skip_batches) if jump
              else contextlib.nullcontext())
  with starting:
    ds = seqio.get_dataset(
        mixture_or_task_name, task_feature_lengths=dict(task_feature_lengths),
        dataset_split=split, shuffle=shuffle, num_epochs=num_epochs, seed=seed, shard_info=shard,
        use_cached=False, feature_converter=feature_converter(pack),
        # Sources whose tasks are cut to length already (the synthetic ones) say so; skipping
        # seqio's per-example trim map then changes nothing but the speed.
        trim_output_features=not output_is_trimmed(task))
  ds = ds.batch(batch_size, drop_remainder=True)
  if skip_batches and not jump:
    ds = ds.skip(skip_batches)  # Exact, but regenerates what it skips.
  return with_autotune(ds.prefetch(tf.data.AUTOTUNE), autotune)


def with_autotune(ds: tf.data.Dataset, enabled: bool) -> tf.data.Dataset:
  """`ds` with tf.data's autotuning switched on or off (see `get_dataset` for why it is off)."""
  options = tf.data.Options()
  options.autotune.enabled = enabled
  return ds.with_options(options)


def output_is_trimmed(task: seqio.Task | seqio.Mixture) -> bool:
  """Whether every (sub)task's source says its task's output is already cut to length (then
  seqio's per-example trim map is skipped: same examples, faster). Sources that do not say
  (`output_is_trimmed(task)` method absent) are trimmed by seqio as usual."""
  def trimmed(sub: seqio.Task) -> bool:
    says = getattr(sub.source, "output_is_trimmed", None)
    return callable(says) and bool(says(sub))
  return all(trimmed(sub) for sub in seqio.get_subtasks(task))


def resumes_by_index(task: seqio.Task | seqio.Mixture, split: str, pack: bool) -> bool:
  """Whether a resumed `split` can start its source at step × batch instead of skipping batches.

  The data source decides (its `resume_policy(task, split, pack)` returns 'jump' or 'skip'; see
  `synthetic_sources.SyntheticStreamSource`); a source without a policy, and every mixture (whose
  tasks interleave by sampling), skips.
  """
  if not isinstance(task, seqio.Task):
    return False
  policy = getattr(task.source, "resume_policy", None)
  return callable(policy) and policy(task, split, pack) == "jump"


def as_numpy(ds: tf.data.Dataset) -> Iterator[dict[str, np.ndarray]]:
  return ds.as_numpy_iterator()
