"""Tests for the nesting-dependency artificial language (SPEC §2.3)."""

import numpy as np
import pytest

from synthetic_pretraining.generators import base
from synthetic_pretraining.generators import nesting
from synthetic_pretraining.vocab_spec import VocabSpec

# The T5 id layout without needing the SentencePiece model: symbols 2..31999.
T5_LIKE = VocabSpec(symbol_low=2, symbol_high=31999, base_vocab_size=32000, num_extra_ids=100,
                    encode_fn=lambda s: [], space_piece_id=3, name="t5-like")


def _depths(ids, task):
  """Depth after each token (heads push, tails pop)."""
  heads = set(task.head_ids.tolist())
  return np.cumsum([1 if int(t) in heads else -1 for t in ids])


def _block(task, n=256, seed=0):
  return task.sample_block(np.random.default_rng(seed), n)


def test_is_well_nested_checker():
  pairs = {10: 11, 20: 21, 30: 31}
  assert nesting.is_well_nested([], pairs)
  assert nesting.is_well_nested([10, 20, 21, 30, 31, 11, 10, 11], pairs)
  assert nesting.is_well_nested(np.array([20, 20, 21, 21]), pairs)
  assert not nesting.is_well_nested([10, 20, 11, 21], pairs)  # Crossing.
  assert not nesting.is_well_nested([10, 20, 21], pairs)  # Left open.
  assert not nesting.is_well_nested([11, 10], pairs)  # Tail first.
  assert not nesting.is_well_nested([10, 31], pairs)  # Wrong tail.
  assert not nesting.is_well_nested([10, 12, 11], pairs)  # Not a head or tail.


def test_examples_are_well_nested_in_range_targets_only():
  task = nesting.NestingLanguageTask(T5_LIKE)
  assert task.name == "nesting_language"
  assert task.num_pairs == 15999
  examples = _block(task, 512)
  for inputs, targets in examples:
    assert inputs.dtype == np.int32 and inputs.shape == (0,)
    assert targets.dtype == np.int32 and targets.ndim == 1
    assert task.is_well_nested(targets)
    assert len(targets) % 2 == 0 and 256 - 64 < len(targets) <= 256
    assert targets.min() >= 2 and targets.max() <= 31999
  lengths = {len(t) for _, t in examples}
  assert len(lengths) > 10  # Packing whole sentences leaves varying lengths.


def test_head_tail_mapping():
  task = nesting.NestingLanguageTask(T5_LIKE, vocab_size=1000)
  assert task.head_ids[:3].tolist() == [2, 4, 6] and task.tail_ids[:3].tolist() == [3, 5, 7]
  assert task.head_to_tail[2] == 3 and len(task.head_to_tail) == 500
  ids = np.concatenate([t for _, t in _block(task)])
  assert ids.min() >= 2 and ids.max() <= 1001
  # Each pair's head and tail occur equally often.
  heads = np.bincount(ids[(ids - 2) % 2 == 0] - 2, minlength=1000)[::2]
  tails = np.bincount(ids[(ids - 2) % 2 == 1] - 3, minlength=1000)[::2]
  np.testing.assert_array_equal(heads, tails)


def test_id_shuffle_keeps_structure_and_range():
  task = nesting.NestingLanguageTask(T5_LIKE, vocab_size=2000, id_shuffle_seed=5)
  plain = nesting.NestingLanguageTask(T5_LIKE, vocab_size=2000)
  assert sorted(task.head_ids.tolist()) == plain.head_ids.tolist()
  assert task.head_ids[:10].tolist() != plain.head_ids[:10].tolist()
  np.testing.assert_array_equal(task.tail_ids, task.head_ids + 1)
  for _, targets in _block(task, 64):
    assert task.is_well_nested(targets)
    assert targets.min() >= 2 and targets.max() <= 2001


@pytest.mark.parametrize("exponent", [1.0, 1.5])
def test_rank_frequency_is_zipf(exponent):
  task = nesting.NestingLanguageTask(T5_LIKE, zipf_exponent=exponent)
  ids = np.concatenate([t for _, t in _block(task, 512, seed=1)])
  heads = ids[ids % 2 == 0]  # Heads are even ids (symbol_low = 2).
  counts = np.sort(np.bincount((heads - 2) // 2, minlength=task.num_pairs))[::-1]
  ranks = np.arange(1, 31)
  slope = np.polyfit(np.log(ranks), np.log(counts[:30]), 1)[0]
  assert slope == pytest.approx(-exponent, abs=0.15)


def test_open_probability_extremes_and_max_depth():
  # Always open: each 8-token sentence is h1 h2 h3 h4 t4 t3 t2 t1.
  task = nesting.NestingLanguageTask(T5_LIKE, open_prob=1.0, sentence_length_range=(8, 8),
                                     max_length=32)
  for _, targets in _block(task, 16):
    assert len(targets) == 32
    np.testing.assert_array_equal(_depths(targets, task), np.tile([1, 2, 3, 4, 3, 2, 1, 0], 4))
  # Never open unless forced: adjacent pairs h t h t …
  task = nesting.NestingLanguageTask(T5_LIKE, open_prob=0.0)
  for _, targets in _block(task, 16):
    assert set(_depths(targets, task)[::2].tolist()) == {1}
    assert task.is_well_nested(targets)
  task = nesting.NestingLanguageTask(T5_LIKE, open_prob=0.9, max_depth=3)
  depths = np.concatenate([_depths(t, task) for _, t in _block(task, 64)])
  assert depths.max() == 3 and depths.min() == 0


def test_default_depth_is_shallow_but_nested():
  task = nesting.NestingLanguageTask(T5_LIKE)
  depths = np.concatenate([_depths(t, task) for _, t in _block(task, 128)])
  assert depths.min() == 0
  assert 1.3 < depths.mean() < 4.0  # About 2 with open_prob 0.4.
  assert (depths >= 4).any()


def test_sentence_packing():
  task = nesting.NestingLanguageTask(T5_LIKE, sentence_length_range=(100, 100), max_length=256)
  assert {len(t) for _, t in _block(task, 32)} == {200}
  task = nesting.NestingLanguageTask(T5_LIKE, sentence_length_range=(2, 2), max_length=10)
  for _, targets in _block(task, 32):
    np.testing.assert_array_equal(_depths(targets, task), [1, 0] * 5)
  assert not task.sample_block(np.random.default_rng(0), 0)


def test_byte_vocabulary():
  spec = VocabSpec.byte()
  task = nesting.NestingLanguageTask(spec)
  assert task.num_pairs == 128
  for _, targets in _block(task, 32):
    assert task.is_well_nested(targets)
    assert targets.min() >= 3 and targets.max() <= 258


@pytest.mark.parametrize("kwargs, message", [
    (dict(vocab_size=7), "must be even"),
    (dict(vocab_size=40000), r"must be even and in \[2, 31998\]"),
    (dict(sentence_length_range=(3, 8)), "both even"),
    (dict(sentence_length_range=(8, 4)), "both even"),
    (dict(sentence_length_range=(4, 300)), "exceeds max_length 256"),
    (dict(open_prob=1.5), "open_prob must be in"),
    (dict(max_depth=0), "max_depth must be"),
])
def test_bad_knobs_are_rejected(kwargs, message):
  with pytest.raises(ValueError, match=message):
    nesting.NestingLanguageTask(T5_LIKE, **kwargs)


def test_symbol_range_with_pad_or_eos_is_rejected():
  spec = VocabSpec(symbol_low=0, symbol_high=50, base_vocab_size=51, num_extra_ids=0,
                   encode_fn=lambda s: [], name="bad")
  with pytest.raises(ValueError, match="overlaps pad/eos ids 0/1"):
    nesting.NestingLanguageTask(spec)


def test_deterministic_addressing_and_resume():
  task = nesting.NestingLanguageTask(T5_LIKE)
  stream = list(base.iter_examples(task, seed=9, shard=2, start=0, stop=600))
  for index in (0, 255, 256, 599):
    np.testing.assert_array_equal(base.example_at(task, 9, 2, index)[1], stream[index][1])
  resumed = list(base.iter_examples(task, seed=9, shard=2, start=300, stop=600))
  for (_, a), (_, b) in zip(resumed, stream[300:], strict=True):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(base.example_at(task, 9, 3, 0)[1], stream[0][1])
  # One example drawn alone equals the same draw through the block path.
  single = task.sample(np.random.default_rng(4))[1]
  np.testing.assert_array_equal(single, task.sample_block(np.random.default_rng(4), 1)[0][1])
  assert task.is_well_nested(single)
