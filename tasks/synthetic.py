"""SeqIO tasks and mixtures of the synthetic pre-training data (streamed, and from files)."""

from __future__ import annotations

import functools
from typing import Mapping, Sequence

import seqio
from t5.data import preprocessors as t5_preprocessors
import tensorflow as tf

from synthetic_pretraining.data import preprocessors as sp_preprocessors
from synthetic_pretraining.data import synthetic_sources
from synthetic_pretraining.data import vocab as vocab_lib
from synthetic_pretraining.generators import registry

LIME_TASKS: tuple[str, ...] = registry.LIME_TASK_NAMES
SIMPLE_TASKS: tuple[str, ...] = tuple(
    name for name in registry.TASK_NAMES
    if name not in registry.LIME_TASK_NAMES and name not in registry.OTHER_TASK_NAMES)
SPAN_CORRUPTION_TASKS = ("nesting_language",)
FILES_SUFFIX = "_files"
SIMPLE_MIXTURE = "simple_tasks_all"
LIME_MIXTURE = "lime"


def output_features(vocabulary: seqio.Vocabulary) -> Mapping[str, seqio.Feature]:
  """int32 `inputs` and `targets`, both with EOS."""
  return {
      "inputs": seqio.Feature(vocabulary=vocabulary, add_eos=True, dtype=tf.int32),
      "targets": seqio.Feature(vocabulary=vocabulary, add_eos=True, dtype=tf.int32),
  }


def _span_corruption() -> list:
  # T5 defaults, as the release's nesting_language task: density 0.15, mean span 3.
  return [functools.partial(t5_preprocessors.span_corruption, noise_density=0.15,
                            mean_noise_span_length=3.0),
          sp_preprocessors.append_eos_after_trim]


def _replace_task(name: str, source: seqio.DataSource, vocabulary: seqio.Vocabulary,
                  preprocessors: Sequence, shuffle_buffer_size: int | None) -> None:
  seqio.TaskRegistry.remove(name)
  seqio.TaskRegistry.add(name, source=source, output_features=output_features(vocabulary),
                         preprocessors=list(preprocessors), metric_fns=[],
                         shuffle_buffer_size=shuffle_buffer_size)


def _replace_mixture(name: str, tasks: Sequence[str]) -> None:
  seqio.MixtureRegistry.remove(name)
  seqio.MixtureRegistry.add(name, list(tasks), default_rate=1.0)


def register_synthetic_tasks(vocabulary: seqio.Vocabulary,
                             data_dir: str | None = None) -> list[str]:
  """Registers every synthetic task and mixture for `vocabulary`; returns the names.

  Args:
    vocabulary: the shared vocabulary; the generators see it through `get_vocab_spec`.
    data_dir: folder of the `_files` variants (None: resolved when a dataset is built).

  Returns:
    Registered task and mixture names.
  """
  spec_fn = functools.partial(vocab_lib.get_vocab_spec, vocabulary)
  names = []
  for task_id in SIMPLE_TASKS + LIME_TASKS + registry.OTHER_TASK_NAMES:
    targets_only = task_id in SPAN_CORRUPTION_TASKS
    # EOS is appended batch-wise (same output as seqio's per-example append_eos_after_trim).
    preprocessors = (_span_corruption() if targets_only
                     else [sp_preprocessors.append_eos_after_trim])
    stream = synthetic_sources.SyntheticStreamSource(
        functools.partial(synthetic_sources.build_generator, task_id), spec_fn,
        targets_only=targets_only)
    # Streams are i.i.d. draws: no shuffle buffer, so a resumed stream is exact.
    _replace_task(task_id, stream, vocabulary, preprocessors, shuffle_buffer_size=None)
    files = synthetic_sources.SyntheticFileSource(task_id, data_dir, targets_only=targets_only)
    _replace_task(task_id + FILES_SUFFIX, files, vocabulary, preprocessors,
                  shuffle_buffer_size=seqio.SHUFFLE_BUFFER_SIZE)
    names += [task_id, task_id + FILES_SUFFIX]
  for mixture, members in ((LIME_MIXTURE, LIME_TASKS), (SIMPLE_MIXTURE, SIMPLE_TASKS)):
    _replace_mixture(mixture, members)
    _replace_mixture(mixture + FILES_SUFFIX, [m + FILES_SUFFIX for m in members])
    names += [mixture, mixture + FILES_SUFFIX]
  return names
