"""The batched append_eos_after_trim gives seqio's output, example for example."""

import numpy as np
import pytest
import seqio
import tensorflow as tf

from synthetic_pretraining.data import preprocessors


def _features(add_eos_targets=True):
  vocab = seqio.PassThroughVocabulary(size=500, eos_id=1)
  return {"inputs": seqio.Feature(vocab, add_eos=True, dtype=tf.int32),
          "targets": seqio.Feature(vocab, add_eos=add_eos_targets, dtype=tf.int32)}


def _examples(n=300, seed=0):
  rng = np.random.default_rng(seed)
  rows = [{"inputs": rng.integers(2, 500, rng.integers(0, 40)).astype(np.int32),
           "targets": rng.integers(2, 500, rng.integers(0, 40)).astype(np.int32),
           "id": np.int64(i), "text": f"example {i}"} for i in range(n)]
  return tf.data.Dataset.from_generator(
      lambda: iter(rows), output_signature={
          "inputs": tf.TensorSpec([None], tf.int32), "targets": tf.TensorSpec([None], tf.int32),
          "id": tf.TensorSpec([], tf.int64), "text": tf.TensorSpec([], tf.string)})


def _as_lists(ds):
  return [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in ex.items()}
          for ex in ds.as_numpy_iterator()]


@pytest.mark.parametrize("sequence_length", [None, {"inputs": 16, "targets": 25},
                                             {"inputs": 1, "targets": None}, {"inputs": 64}])
@pytest.mark.parametrize("add_eos_targets,batch_size", [(True, 7), (False, 256)])
def test_same_examples_as_seqio(sequence_length, add_eos_targets, batch_size):
  features = _features(add_eos_targets)
  want = seqio.preprocessors.append_eos_after_trim(_examples(), features, sequence_length)
  got = preprocessors.append_eos_after_trim(_examples(), features, sequence_length,
                                            batch_size=batch_size)
  # unbatch() types rank-1 id vectors as ragged_rank-0 RaggedTensorSpecs (what the streamed
  # sources give too): inside tf.data functions they are plain tensors of the same dtype and shape.
  for key, spec in want.element_spec.items():
    assert got.element_spec[key].dtype == spec.dtype
    assert got.element_spec[key].shape.as_list() == spec.shape.as_list()
  assert _as_lists(got) == _as_lists(want)


def test_rank_two_features_are_refused():
  ds = tf.data.Dataset.from_tensors({"inputs": tf.zeros([2, 3], tf.int32)})
  with pytest.raises(ValueError, match="feature 'inputs' has rank 2"):
    preprocessors.append_eos_after_trim(ds, _features())
