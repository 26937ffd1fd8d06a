"""Row-wise set operations whose output order is CPython's set iteration order.

The release's union / intersect / set1_minus_set2 / set2_minus_set1 outputs are
`list(set(a) OP set(b))`, so their order is that of CPython's hash table. `set_operation_rows`
computes them for a whole block of rows: with the C kernel in `_native` (built by `pip install`;
it re-creates CPython 3.11's set tables on plain arrays, 3-4x faster than building Python sets)
or, where the extension is not built, with real Python sets. Both give the same ids;
tests/generators/test_setops.py checks the extension against Python sets.
"""

from __future__ import annotations

import itertools

import numpy as np

from synthetic_pretraining.generators import native
from synthetic_pretraining.generators import ragged
from synthetic_pretraining.generators.ragged import Ragged

OPERATIONS = ("union", "intersect", "a_minus_b", "b_minus_a")
_PYTHON_OPERATIONS = {
    "union": lambda a, b: a | b,
    "intersect": lambda a, b: a & b,
    "a_minus_b": lambda a, b: a - b,
    "b_minus_a": lambda a, b: b - a,
}


def set_operation_rows(op: str, a: Ragged, b: Ragged, use_extension: bool = True) -> Ragged:
  """Row r = list(set(a_r) OP set(b_r)) in CPython's set order, for op in OPERATIONS.

  Args:
    op: "union", "intersect", "a_minus_b" or "b_minus_a".
    a: rows of non-negative ids.
    b: as many rows of non-negative ids.
    use_extension: False forces the Python-set path (for tests and benchmarks).

  Returns:
    The result rows (empty rows stay empty).
  """
  if op not in OPERATIONS:
    raise ValueError(f"set operation {op!r} not in {OPERATIONS}")
  if a.num_rows != b.num_rows:
    raise ValueError(f"a has {a.num_rows} rows, b has {b.num_rows}")
  kernels = native.get(use_extension)
  if kernels is not None:
    a_values = np.ascontiguousarray(a.values, dtype=np.int32)
    b_values = np.ascontiguousarray(b.values, dtype=np.int32)
    out_values = np.empty(len(a_values) + len(b_values) + 1, dtype=np.int32)  # +1: kernel slack
    out_lengths = np.empty(a.num_rows, dtype=np.int64)
    written = kernels.set_operation(
        OPERATIONS.index(op), a_values, np.ascontiguousarray(a.lengths, dtype=np.int64),
        b_values, np.ascontiguousarray(b.lengths, dtype=np.int64), out_values, out_lengths)
    return Ragged(out_values[:written], out_lengths)
  return _python_rows(_PYTHON_OPERATIONS[op], a, b)


def _python_rows(operation, a: Ragged, b: Ragged) -> Ragged:
  if (a.values < 0).any() or (b.values < 0).any():
    raise ValueError("set operations need non-negative ids (hash(id) == id)")
  a_ids, b_ids = a.values.tolist(), b.values.tolist()
  a_end, b_end = np.cumsum(a.lengths).tolist(), np.cumsum(b.lengths).tolist()
  results = [list(operation(set(a_ids[a_end[i] - la:a_end[i]]), set(b_ids[b_end[i] - lb:b_end[i]])))
             for i, (la, lb) in enumerate(zip(a.lengths.tolist(), b.lengths.tolist()))]
  lengths = np.fromiter((len(r) for r in results), dtype=np.int64, count=len(results))
  values = np.fromiter(itertools.chain.from_iterable(results), dtype=ragged.ID_DTYPE,
                       count=int(lengths.sum()))
  return Ragged(values, lengths)
