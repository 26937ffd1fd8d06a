"""BatchedEncDecFeatureConverter gives exactly seqio.EncDecFeatureConverter's output."""

import numpy as np
import pytest
import seqio
import tensorflow as tf

from synthetic_pretraining.data import feature_converters as fc
from synthetic_pretraining.data import synthetic_sources as ss
from synthetic_pretraining.generators import registry
from synthetic_pretraining.vocab_spec import VocabSpec

SPEC = {"inputs": tf.TensorSpec([None], tf.int32), "targets": tf.TensorSpec([None], tf.int32),
        "inputs_pretokenized": tf.TensorSpec([], tf.string)}


def _dataset(examples):
  """Examples as a tf.data.Dataset with a string extra feature (dropped by both converters)."""
  def generate():
    for inputs, targets in examples:
      yield {"inputs": np.asarray(inputs, np.int32), "targets": np.asarray(targets, np.int32),
             "inputs_pretokenized": b"x" * len(inputs)}
  return tf.data.Dataset.from_generator(generate, output_signature=SPEC)


def _assert_same(expected: tf.data.Dataset, actual: tf.data.Dataset) -> int:
  assert actual.element_spec == expected.element_spec
  expected, actual = list(expected.as_numpy_iterator()), list(actual.as_numpy_iterator())
  assert len(actual) == len(expected)
  for want, got in zip(expected, actual):
    assert list(got) == list(want)  # Same keys, same order.
    for key in want:
      assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, key
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)
  return len(expected)


def _compare(examples, lengths, pack, apply_length_check=True, batch_size=7):
  seqio_converter = seqio.EncDecFeatureConverter(pack=pack, apply_length_check=apply_length_check)
  ours = fc.BatchedEncDecFeatureConverter(pack=pack, apply_length_check=apply_length_check,
                                          batch_size=batch_size)
  return _assert_same(seqio_converter(_dataset(examples), lengths),
                      ours(_dataset(examples), lengths))


def _random_examples(n, max_length, seed, zero_fraction=0.0, empty_fraction=0.2):
  rng = np.random.default_rng(seed)
  examples = []
  for _ in range(n):
    pair = []
    for _ in range(2):
      length = 0 if rng.random() < empty_fraction else int(rng.integers(1, max_length + 1))
      ids = rng.integers(2, 60, size=length)
      ids[rng.random(length) < zero_fraction] = 0  # seqio packs count_nonzero ids of these.
      if length:
        ids[-1] = 1
      pair.append(ids)
    examples.append(tuple(pair))
  return examples


@pytest.mark.parametrize("pack", [False, True])
@pytest.mark.parametrize("lengths", [{"inputs": 16, "targets": 8}, {"inputs": 7, "targets": 20}])
@pytest.mark.parametrize("zero_fraction", [0.0, 0.2])
def test_random_examples_with_truncation_and_empty_targets(pack, lengths, zero_fraction):
  # Longer than the lengths (truncated: only possible without the length check), empty
  # features, several packing windows and a final partial one, a final partial internal batch.
  examples = _random_examples(101, 25, seed=len(lengths) + int(10 * zero_fraction),
                              zero_fraction=zero_fraction)
  assert _compare(examples, lengths, pack, apply_length_check=False) > 1


def test_all_empty_window_gives_a_zero_row_like_seqio():
  empty = (np.zeros([0], np.int32), np.zeros([0], np.int32))
  for pack in (False, True):
    assert _compare([empty] * 5, {"inputs": 4, "targets": 4}, pack) == (2 if pack else 5)


def test_bos_id_and_docstring_example():
  examples = [([7, 8, 5, 1], [3, 9, 1]), ([8, 4, 9, 3, 1], [4, 1])]
  lengths = {"inputs": 10, "targets": 7}
  ours = fc.BatchedEncDecFeatureConverter(pack=True)
  (row,) = list(ours(_dataset(examples), lengths).as_numpy_iterator())
  np.testing.assert_array_equal(row["encoder_input_tokens"], [7, 8, 5, 1, 8, 4, 9, 3, 1, 0])
  np.testing.assert_array_equal(row["decoder_input_tokens"], [0, 3, 9, 0, 4, 0, 0])
  np.testing.assert_array_equal(row["decoder_segment_ids"], [1, 1, 1, 2, 2, 0, 0])
  np.testing.assert_array_equal(row["encoder_positions"], [0, 1, 2, 3, 0, 1, 2, 3, 4, 0])
  for pack in (False, True):
    want = seqio.EncDecFeatureConverter(pack=pack, bos_id=5)(_dataset(examples), lengths)
    got = fc.BatchedEncDecFeatureConverter(pack=pack, bos_id=5)(_dataset(examples), lengths)
    _assert_same(want, got)


def test_length_check_fails_like_seqio():
  examples = [([5] * 12, [6, 1])]
  converter = fc.BatchedEncDecFeatureConverter(pack=False)
  ds = converter(_dataset(examples), {"inputs": 8, "targets": 8})
  with pytest.raises(tf.errors.InvalidArgumentError, match="Feature .'inputs.' has length not "
                     "less than or equal to the expected length of 8"):
    list(ds.as_numpy_iterator())


def test_bad_arguments_are_clear_errors():
  with pytest.raises(ValueError, match="use_custom_packing_ops"):
    fc.BatchedEncDecFeatureConverter(use_custom_packing_ops=True)
  with pytest.raises(ValueError, match="batch_size"):
    fc.BatchedEncDecFeatureConverter(batch_size=0)
  converter = fc.BatchedEncDecFeatureConverter(pack=False)
  with pytest.raises(ValueError, match="exactly the keys"):
    converter(_dataset([([1], [1])]), {"inputs": 4})
  floats = tf.data.Dataset.from_tensors({"inputs": [1.0], "targets": [1.0]})
  with pytest.raises(ValueError, match="incorrect type for feature 'inputs'"):
    converter(floats, {"inputs": 4, "targets": 4})


def _task(name, source, targets_only=False):
  vocabulary = seqio.ByteVocabulary(extra_ids=100)
  features = {k: seqio.Feature(vocabulary=vocabulary, add_eos=True, dtype=tf.int32)
              for k in ("inputs", "targets")}
  preprocessors = [seqio.preprocessors.append_eos_after_trim]
  if targets_only:  # Inputs built from the targets, as the registry's span-corruption tasks.
    preprocessors.insert(0, _copy_targets_to_inputs)
  seqio.TaskRegistry.remove(name)
  return seqio.TaskRegistry.add(name, source=source, output_features=features,
                                preprocessors=preprocessors, shuffle_buffer_size=None)


@seqio.map_over_dataset
def _copy_targets_to_inputs(example):
  return {"inputs": example["targets"][::-1], "targets": example["targets"]}


@pytest.mark.parametrize("task_id", ["set", "identity", "deduct", "nesting_language"])
@pytest.mark.parametrize("pack", [False, True])
def test_streamed_tasks_through_get_dataset(task_id, pack):
  targets_only = task_id == "nesting_language"
  source = ss.SyntheticStreamSource(
      lambda spec: registry.get_task(task_id, spec), VocabSpec.byte,
      num_valid_examples=300, targets_only=targets_only)
  task = _task(f"test_fc_{task_id}", source, targets_only)
  # Short lengths truncate many examples (append_eos_after_trim keeps the EOS).
  lengths = {"inputs": 24, "targets": 16}
  kwargs = dict(dataset_split="validation", shuffle=False, batch_size=None)
  want = seqio.get_dataset(task, lengths, seqio.EncDecFeatureConverter(pack=pack), **kwargs)
  got = seqio.get_dataset(task, lengths, fc.BatchedEncDecFeatureConverter(pack=pack), **kwargs)
  assert _assert_same(want, got) > (50 if pack else 299)


def test_downstream_like_text_task():
  vocabulary = seqio.ByteVocabulary()
  texts = {"inputs": ["question: what is two plus two?", "", "a" * 40],
           "targets": ["four", "", "b" * 30]}
  source = seqio.FunctionDataSource(lambda split, shuffle_files: tf.data.Dataset.from_tensor_slices(
      texts), splits=["train"])
  features = {k: seqio.Feature(vocabulary=vocabulary, add_eos=True) for k in texts}
  seqio.TaskRegistry.remove("test_fc_text")
  task = seqio.TaskRegistry.add(
      "test_fc_text", source=source, output_features=features,
      preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim])
  lengths = {"inputs": 32, "targets": 16}
  for pack in (False, True):
    kwargs = dict(shuffle=False, try_in_mem_cache=False)
    want = seqio.EncDecFeatureConverter(pack=pack)(task.get_dataset(lengths, **kwargs), lengths)
    got = fc.BatchedEncDecFeatureConverter(pack=pack)(task.get_dataset(lengths, **kwargs),
                                                      lengths)
    _assert_same(want, got)


def test_greedy_row_starts_matches_a_python_loop():
  rng = np.random.default_rng(3)
  for _ in range(20):
    n = int(rng.integers(1, 40))
    a, b = rng.integers(0, 9, size=n), rng.integers(0, 5, size=n)
    starts, used = [0], (0, 0)
    for i in range(n):  # seqio's greedy rule.
      if used[0] + a[i] > 8 or used[1] + b[i] > 4:
        starts.append(i)
        used = (0, 0)
      used = (used[0] + a[i], used[1] + b[i])
    got = fc.greedy_row_starts({"a": tf.constant(a, tf.int32), "b": tf.constant(b, tf.int32)},
                               {"a": 8, "b": 4}, 40)
    assert got.numpy().tolist() == starts


def test_training_and_evaluation_use_the_batched_converter_by_default():
  from synthetic_pretraining.train import data_input  # pylint: disable=g-import-not-at-top
  converter = data_input.feature_converter(pack=True)
  assert isinstance(converter, fc.BatchedEncDecFeatureConverter) and converter.pack
  assert isinstance(converter, seqio.EncDecFeatureConverter)  # T5X's class check holds.
