"""The tiny copy task of `synthetic-pretraining crash-trials`, registered when imported.

Deterministic byte-id copy examples from a seqio FunctionDataSource: no data files, vocabulary
model or network. Imported by the trial runs through gin `MIXTURE_OR_TASK_MODULE`.
"""

from __future__ import annotations

import numpy as np
import seqio
import tensorflow as tf

TASK_NAME = "crash_trial_copy"


def _register_task() -> None:
  """A deterministic copy task over byte ids (seqio FunctionDataSource), registered on import."""
  if TASK_NAME in seqio.TaskRegistry.names():
    return

  def dataset_fn(split, shuffle_files, seed=None):
    del shuffle_files, seed
    offset = 0 if split == "train" else 1_000_000

    def gen():
      for i in range(100_000 if split == "train" else 64):
        rng = np.random.default_rng(offset + i)
        ids = rng.integers(3, 3 + 16, int(rng.integers(3, 9))).astype(np.int32)
        yield {"inputs": ids, "targets": ids}

    spec = {"inputs": tf.TensorSpec([None], tf.int32), "targets": tf.TensorSpec([None], tf.int32)}
    return tf.data.Dataset.from_generator(gen, output_signature=spec)

  vocab = seqio.ByteVocabulary()
  features = {k: seqio.Feature(vocab, add_eos=True) for k in ("inputs", "targets")}
  seqio.TaskRegistry.add(
      TASK_NAME, source=seqio.FunctionDataSource(dataset_fn, splits=("train", "validation")),
      preprocessors=[seqio.preprocessors.append_eos_after_trim], output_features=features)


_register_task()
