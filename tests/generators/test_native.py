"""The C row kernels agree with the numpy fallbacks (and with plain Python) on random rows."""

import numpy as np
import pytest

from synthetic_pretraining.generators import base
from synthetic_pretraining.generators import native
from synthetic_pretraining.generators import ragged
from synthetic_pretraining.generators import registry
from synthetic_pretraining.generators import simple_unary
from synthetic_pretraining.vocab_spec import VocabSpec


def _rows(seed, num_rows, max_len, high):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(0, max_len + 1, num_rows)
  return rng.integers(0, high, int(lengths.sum())).astype(np.int32), lengths


def _python_representatives(values, lengths, last):
  reps, start = [], 0
  for n in lengths.tolist():
    row = values[start:start + n].tolist()
    where = {}
    for j in (reversed(range(n)) if last else range(n)):
      where.setdefault(row[j], start + j)
    reps += [where[v] for v in row]
    start += n
  return reps


def test_kernels_are_built():
  assert native.available(), "reinstall with `bash scripts/setup.sh` to build _native"


@pytest.mark.parametrize("last", [False, True])
@pytest.mark.parametrize("num_rows,max_len,high", [(300, 220, 32000), (300, 40, 5), (3, 5000, 10**9),
                                                   (50, 0, 10), (1, 1, 2**31 - 1)])
def test_group_representatives(last, num_rows, max_len, high):
  values, lengths = _rows(num_rows * max_len + high % 97, num_rows, max_len, high)
  expected = _python_representatives(values, lengths, last)
  assert ragged.group_representatives(values, lengths, last=last).tolist() == expected
  assert ragged.group_representatives(values, lengths, last=last,
                                      use_native=False).tolist() == expected


@pytest.mark.parametrize("high", [3, 300, 32000])
def test_first_occurrence_mask(high):
  values, lengths = _rows(high, 400, 220, high)
  got = ragged.first_occurrence_mask(values, lengths)
  fallback = ragged.first_occurrence_mask(values, lengths, use_native=False)
  np.testing.assert_array_equal(got, fallback)
  reps = np.asarray(_python_representatives(values, lengths, last=False))
  np.testing.assert_array_equal(got, reps == np.arange(len(values)))


def test_kernel_errors_name_the_problem():
  with pytest.raises(ValueError, match="lengths sum to 3 but there are 2 values"):
    native.module.group_representatives(np.array([1, 2], np.int32), np.array([3], np.int64),
                                        False, np.empty(2, np.int64))
  with pytest.raises(ValueError, match="row 0: negative length"):
    native.module.group_representatives(np.array([], np.int32), np.array([-1, 1], np.int64),
                                        False, np.empty(0, np.int64))
  with pytest.raises(ValueError, match="one byte \\(bool\\) per value"):
    native.module.first_occurrence(np.array([1, 2], np.int32), np.array([2], np.int64),
                                   np.empty(3, bool))
  with pytest.raises(ValueError, match="one uint64 per value"):
    native.module.shuffle_rows(np.array([1, 2], np.int32), np.array([2], np.int64),
                               np.empty(1, np.uint64))
  with pytest.raises(ValueError, match="one int64 per value"):
    native.module.group_representatives(np.array([1, 2], np.int32), np.array([2], np.int64),
                                        False, np.empty(1, np.int64))


@pytest.mark.parametrize("num_rows,max_len", [(300, 220), (5, 3000), (40, 1), (10, 0)])
def test_shuffle_rows_same_permutation_both_ways(num_rows, max_len):
  values, lengths = _rows(max_len, num_rows, max_len, 2**31 - 1)
  native_out = ragged.shuffle_rows(np.random.default_rng(5), values, lengths)
  numpy_out = ragged.shuffle_rows(np.random.default_rng(5), values, lengths, use_native=False)
  np.testing.assert_array_equal(native_out, numpy_out)
  # Each row is a permutation of itself, and the input is left as it was.
  start = 0
  for n in lengths.tolist():
    assert sorted(native_out[start:start + n].tolist()) == sorted(values[start:start + n].tolist())
    start += n
  if len(values) > 1000:
    assert not np.array_equal(native_out, values)


def test_gather_segments_both_ways():
  rng = np.random.default_rng(11)
  source = rng.integers(0, 2**31 - 1, 5000).astype(np.int32)
  lengths = rng.integers(0, 30, 400)
  starts = (rng.random(400) * (len(source) - lengths)).astype(np.int64)
  expected = np.concatenate([source[s:s + l] for s, l in zip(starts, lengths)])
  np.testing.assert_array_equal(ragged.gather_segments(source, starts, lengths), expected)
  np.testing.assert_array_equal(ragged.gather_segments(source, starts, lengths, use_native=False),
                                expected)
  with pytest.raises(ValueError, match=r"segment 1 = \[4998, 5003\) lies outside the source of 5000"):
    native.module.gather_segments(source, np.array([0, 4998]), np.array([1, 5]),
                                  np.empty(6, np.int32))


def test_set_run_labels_both_ways():
  rng = np.random.default_rng(12)
  lengths = rng.integers(1, 220, 300)
  seed = ragged.random_subset_mask(rng, lengths)
  seed[ragged.exclusive_cumsum(lengths)] = True  # Every row needs a seed.
  num_runs = np.add.reduceat(seed, ragged.exclusive_cumsum(lengths), dtype=np.int64)
  uniform = rng.random(len(seed))
  got = simple_unary.run_labels(lengths, seed, num_runs, uniform)
  np.testing.assert_array_equal(
      got, simple_unary.run_labels(lengths, seed, num_runs, uniform, use_native=False))
  # Row-local labels: seeds 0..k-1 in order, the rest floor(u * k).
  start, offset = 0, 0
  for n, k in zip(lengths.tolist(), num_runs.tolist()):
    row = got[start:start + n] - offset
    row_seed = seed[start:start + n]
    assert row[row_seed].tolist() == list(range(k))
    assert (row[~row_seed] == (uniform[start:start + n][~row_seed] * k).astype(int)).all()
    start, offset = start + n, offset + k
  with pytest.raises(ValueError, match="row 1 has no seed position"):
    native.module.run_labels(np.array([1, 2]), np.array([1, 0, 0], bool), np.zeros(3),
                             np.empty(3, np.int64))


@pytest.mark.parametrize("alphabet", [5, 256, 31998])
def test_distinct_draws_both_ways(alphabet):
  sizes = np.random.default_rng(alphabet).integers(0, min(alphabet, 109) + 1, 300)
  sizes[:3] = [alphabet, 0, 1]  # A full permutation, an empty row, one id.
  got = ragged.distinct_draws(np.random.default_rng(9), sizes, alphabet)
  np.testing.assert_array_equal(
      got, ragged.distinct_draws(np.random.default_rng(9), sizes, alphabet, use_native=False))
  rows = ragged.split_rows(got, sizes)
  assert all(len(set(r.tolist())) == len(r) for r in rows)
  assert got.min() >= 0 and got.max() < alphabet
  assert sorted(rows[0].tolist()) == list(range(alphabet))


def test_distinct_draws_are_uniform():
  # Ordered pairs of distinct ids from 4: each of the 12 equally likely.
  got = ragged.distinct_draws(np.random.default_rng(3), np.full(24_000, 2), 4).reshape(-1, 2)
  counts = np.bincount(got[:, 0] * 4 + got[:, 1], minlength=16)
  assert (counts[[0, 5, 10, 15]] == 0).all()
  off_diagonal = np.delete(counts, [0, 5, 10, 15])
  assert np.abs(off_diagonal / 24_000 - 1 / 12).max() < 0.01
  with pytest.raises(ValueError, match="cannot draw 5 distinct ids from 4"):
    ragged.distinct_draws(np.random.default_rng(0), np.array([5]), 4)


@pytest.mark.parametrize("name", registry.TASK_NAMES)
def test_every_task_is_the_same_without_the_kernels(name, monkeypatch):
  spec = VocabSpec.byte()
  with_kernels = base.generate_ragged_block(registry.get_task(name, spec), 4, 1, 2)
  monkeypatch.setattr(native, "module", None)
  monkeypatch.setattr(native, "_warned", True)  # The one-time warning is tested below.
  without = base.generate_ragged_block(registry.get_task(name, spec), 4, 1, 2)
  for got, want in zip(without, with_kernels):
    np.testing.assert_array_equal(got.values, want.values)
    np.testing.assert_array_equal(got.lengths, want.lengths)


def test_missing_kernels_warn_once(monkeypatch):
  monkeypatch.setattr(native, "module", None)
  monkeypatch.setattr(native, "_warned", False)
  with pytest.warns(UserWarning, match="_native is not built"):
    assert native.get() is None
  assert native.get() is None and native.get(enabled=False) is None
