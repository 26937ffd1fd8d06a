"""A self-contained SeqIO copy task for trainer tests (independent of the generators package)."""

import functools

import numpy as np
import seqio
import tensorflow as tf

VOCAB = seqio.ByteVocabulary(extra_ids=100)
NAME = "toy_copy"


def _dataset_fn(split, shuffle_files, seed=None, max_len=8, num_examples=None):
  del shuffle_files, seed
  offset = 0 if split == "train" else 10_000_000

  def gen():
    i = 0
    while num_examples is None or i < (num_examples if split == "train" else 64):
      rng = np.random.default_rng(offset + i)
      n = int(rng.integers(3, max_len + 1))
      ids = rng.integers(3, 3 + 16, n).astype(np.int32)
      yield {"inputs": ids, "targets": ids}
      i += 1
      if split != "train" and i >= 256:
        return

  spec = {"inputs": tf.TensorSpec([None], tf.int32), "targets": tf.TensorSpec([None], tf.int32)}
  return tf.data.Dataset.from_generator(gen, output_signature=spec)


def register():
  if NAME in seqio.TaskRegistry.names():
    return
  features = {k: seqio.Feature(VOCAB, add_eos=True) for k in ("inputs", "targets")}
  seqio.TaskRegistry.add(
      NAME, source=seqio.FunctionDataSource(_dataset_fn, splits=("train", "validation")),
      preprocessors=[seqio.preprocessors.append_eos_after_trim], output_features=features)


register()
