"""The C set-operation kernel reproduces CPython's set iteration order exactly."""

import numpy as np
import pytest

from synthetic_pretraining.generators import native
from synthetic_pretraining.generators import registry
from synthetic_pretraining.generators import setops
from synthetic_pretraining.generators.ragged import Ragged
from synthetic_pretraining.vocab_spec import VocabSpec


def _python_reference(op, a, b):
  ops = {"union": lambda x, y: x | y, "intersect": lambda x, y: x & y,
         "a_minus_b": lambda x, y: x - y, "b_minus_a": lambda x, y: y - x}
  return [list(ops[op](set(x.tolist()), set(y.tolist()))) for x, y in zip(a.rows(), b.rows())]


def _random_rows(rng, n, max_total, high, pool=None):
  total = rng.integers(0, max_total + 1, n)
  a_len = (rng.random(n) * (total + 1)).astype(np.int64)
  b_len = total - a_len
  draw = (lambda k: rng.choice(pool, k)) if pool is not None else (lambda k: rng.integers(0, high, k))
  return (Ragged(draw(int(a_len.sum())).astype(np.int32), a_len),
          Ragged(draw(int(b_len.sum())).astype(np.int32), b_len))


def test_extension_is_built():
  assert native.available(), ("the C extension synthetic_pretraining.generators._native "
                                        "is missing: reinstall with `bash scripts/setup.sh`")


@pytest.mark.parametrize("op", setops.OPERATIONS)
@pytest.mark.parametrize("regime", ["release", "tiny_alphabet", "large_ids", "large_sets",
                                    "shared_pool"])
def test_extension_matches_python_sets(op, regime):
  rng = np.random.default_rng(abs(hash((op, regime))) % 2**32)
  if regime == "release":  # The task's own sizes: totals up to 219, ids 2..31999.
    a, b = _random_rows(rng, 512, 219, 32000)
  elif regime == "tiny_alphabet":  # Many duplicates, tables that stay at 8 slots.
    a, b = _random_rows(rng, 512, 12, 10)
  elif regime == "large_ids":  # Ids far above the table size (perturbed probing matters).
    a, b = _random_rows(rng, 256, 300, 2**31 - 1)
  elif regime == "large_sets":  # Several resizes, and a - b by copy-then-discard.
    a, b = _random_rows(rng, 24, 5000, 40000)
  else:  # One pool for a and b: large intersections and differences.
    a, b = _random_rows(rng, 512, 219, 0, pool=rng.choice(np.arange(2, 32000), 60, replace=False))
  got = setops.set_operation_rows(op, a, b)
  assert [r.tolist() for r in got.rows()] == _python_reference(op, a, b)
  fallback = setops.set_operation_rows(op, a, b, use_extension=False)
  np.testing.assert_array_equal(got.values, fallback.values)
  np.testing.assert_array_equal(got.lengths, fallback.lengths)


@pytest.mark.parametrize("op", setops.OPERATIONS)
def test_sets_above_50000_keys(op):
  # CPython grows tables by 2x instead of 4x above 50,000 keys.
  rng = np.random.default_rng(7)
  big = rng.integers(0, 2**31 - 1, 70_000)
  # Rows: (70,000 keys, 30,000 of them shared with b's 90,000), (empty, empty), (5 keys, empty).
  a = Ragged(np.concatenate([big, big[:5]]).astype(np.int32), np.array([70_000, 0, 5]))
  b = Ragged(np.concatenate([big[:30_000], rng.integers(0, 2**31 - 1, 60_000)]).astype(np.int32),
             np.array([90_000, 0, 0]))
  got = setops.set_operation_rows(op, a, b)
  assert [r.tolist() for r in got.rows()] == _python_reference(op, a, b)


@pytest.mark.parametrize("name", ["union", "intersect", "set1_minus_set2", "set2_minus_set1"])
def test_task_outputs_are_python_set_order(name):
  task = registry.get_task(name, VocabSpec.byte())
  (a, b), out = task.draw_block(np.random.default_rng(3), 256)
  op = task.operation
  assert [r.tolist() for r in out.rows()] == _python_reference(op, a, b)


def test_errors_name_the_problem():
  a = Ragged(np.array([1, 2], np.int32), np.array([2]))
  with pytest.raises(ValueError, match="not in"):
    setops.set_operation_rows("xor", a, a)
  with pytest.raises(ValueError, match="a has 1 rows, b has 2"):
    setops.set_operation_rows("union", a, Ragged(np.array([1, 2], np.int32), np.array([1, 1])))
  negative = Ragged(np.array([3, -4], np.int32), np.array([2]))
  for use_extension in (True, False):
    with pytest.raises(ValueError, match="non-negative"):
      setops.set_operation_rows("union", negative, a, use_extension=use_extension)
