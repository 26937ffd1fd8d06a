"""The block helpers: exact behaviour on small inputs and the laws of the random ones."""

import collections
import itertools

import numpy as np

from synthetic_pretraining.generators import ragged


def _rows(values, lengths):
  return [r.tolist() for r in ragged.split_rows(np.asarray(values), np.asarray(lengths))]


def test_gather_and_assemble_rows():
  source = np.arange(100, 110)
  np.testing.assert_array_equal(ragged.gather_segments(source, [3, 0, 8], [2, 0, 2]),
                                [103, 104, 108, 109])
  rows = ragged.assemble_rows(source, np.array([[0, 5], [9, 1]]), np.array([[1, 2], [1, 0]]))
  assert rows.rows()[0].tolist() == [100, 105, 106] and rows.rows()[1].tolist() == [109]


def test_first_occurrence_and_representatives():
  values = np.array([5, 7, 5, 5, 9, 7, 7, 7, 1])
  lengths = np.array([4, 0, 5])
  first = ragged.first_occurrence_mask(values, lengths)
  assert first.tolist() == [True, True, False, False, True, True, False, False, True]
  assert ragged.group_representatives(values, lengths).tolist() == [0, 1, 0, 0, 4, 5, 5, 5, 8]
  assert ragged.group_representatives(values, lengths, last=True).tolist() == [
      3, 1, 3, 3, 4, 7, 7, 7, 8]


def test_first_occurrence_matches_python_on_random_rows():
  rng = np.random.default_rng(0)
  lengths = rng.integers(0, 40, 50)
  values = rng.integers(0, 6, lengths.sum())
  mask = ragged.first_occurrence_mask(values, lengths)
  expected = []
  for row in _rows(values, lengths):
    seen = set()
    for v in row:
      expected.append(v not in seen)
      seen.add(v)
  assert mask.tolist() == expected


def test_shuffle_rows_is_a_uniform_permutation_per_row():
  rng = np.random.default_rng(1)
  lengths = np.array([3] * 3000 + [1, 0, 5])
  values = np.concatenate([np.tile([10, 20, 30], 3000), [7], [1, 2, 3, 4, 5]])
  out = ragged.shuffle_rows(rng, values, lengths)
  rows = _rows(out, lengths)
  assert rows[3000] == [7] and rows[3001] == [] and sorted(rows[3002]) == [1, 2, 3, 4, 5]
  counts = collections.Counter(tuple(r) for r in rows[:3000])
  assert set(counts) == set(itertools.permutations([10, 20, 30]))
  assert all(abs(c / 3000 - 1 / 6) < 0.03 for c in counts.values())


def test_balls_in_bins_and_subsets():
  rng = np.random.default_rng(2)
  balls, bins = np.array([10, 0, 7]), np.array([3, 2, 1])
  counts = ragged.balls_in_bins(rng, balls, bins)
  assert len(counts) == 6 and counts[:3].sum() == 10 and counts[3:5].sum() == 0 and counts[5] == 7
  sizes = collections.Counter()
  lengths = np.full(6000, 4)
  mask = ragged.random_subset_mask(rng, lengths)
  for row in _rows(mask, lengths):
    sizes[sum(row)] += 1
  assert all(abs(sizes[k] / 6000 - 1 / 5) < 0.03 for k in range(5))  # Size ~ U[0, 4].


def test_uniform_int_bounds():
  rng = np.random.default_rng(3)
  x = ragged.uniform_int(rng, np.array([0, 5, 9]), np.array([0, 6, 9]), (1000, 3))
  assert (x[:, 0] == 0).all() and set(x[:, 1]) == {5, 6} and (x[:, 2] == 9).all()


def test_draw_accepted_conditions_iid_draws():
  rng = np.random.default_rng(4)
  p = ragged.draw_accepted(rng, 500, lambda r, m: {"x": r.integers(0, 10, m)},
                           lambda d: d["x"] >= 7)
  assert len(p["x"]) == 500 and set(p["x"]) == {7, 8, 9}
