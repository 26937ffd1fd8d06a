"""The release's "no occurrence" test, str(b)[1:-1] in str(a), decided on ids without strings."""

import numpy as np
import pytest

from synthetic_pretraining.generators import simple_binary
from synthetic_pretraining.generators.ragged import Ragged


@pytest.mark.parametrize("high", [3, 12, 130, 32000])
def test_text_contains_equals_the_string_test(high):
  rng = np.random.default_rng(high)
  n = 3000
  seq_len = rng.integers(0, 12, n)
  q_len = rng.integers(1, 5, n)
  seq = rng.integers(0, high, int(seq_len.sum())).astype(np.int32)
  query = rng.integers(0, high, int(q_len.sum())).astype(np.int32)
  check = rng.random(n) < 0.9
  got = simple_binary._OccurrenceTask._text_contains(seq, seq_len, query, q_len, check)
  a_rows, b_rows = Ragged(seq, seq_len).rows(), Ragged(query, q_len).rows()
  expected = [bool(c) and str(b.tolist())[1:-1] in str(a.tolist())
              for a, b, c in zip(a_rows, b_rows, check)]
  assert got.tolist() == expected
  assert 0 < sum(expected) < n  # Both outcomes occur (digit-level matches included for small ids).


def test_digit_helpers():
  values = np.array([0, 5, 105, 1050, 12, 7], dtype=np.int64)
  assert simple_binary._ends_with(values, np.array([0, 5, 5, 50, 2, 17])).tolist() == [
      True, True, True, True, True, False]
  assert simple_binary._starts_with(values, np.array([0, 5, 10, 105, 12, 70])).tolist() == [
      True, True, True, True, True, False]
  assert simple_binary._digits_inside(values, np.array([0, 5, 0, 5, 3, 7])).tolist() == [
      True, True, True, True, False, True]
