"""Numpy helpers for drawing a whole block of variable-length examples at once.

A block of B examples is held as flat arrays plus per-row lengths (row-major: all of row 0, then
row 1, …). Every helper works on the whole block with a handful of numpy calls, so the Python cost
per example stays a few hundred nanoseconds. The per-element loops that numpy can only do with
sorts or many passes (first occurrences, representatives, shuffles, segment gathers) run in the C
kernels of `_native` when they are built (`native.get`), with numpy fallbacks that give the same
results.

Uniform integers in a per-row range are drawn as floor(u * n) from 53-bit doubles: the total
variation from the exact uniform law is below n / 2**53 (< 1e-13 for the ranges used here).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from synthetic_pretraining.generators import native

ID_DTYPE = np.int32


@dataclasses.dataclass
class Ragged:
  """Rows of ids stored flat: row r is values[starts[r]:starts[r] + lengths[r]]."""

  values: np.ndarray
  lengths: np.ndarray

  @property
  def num_rows(self) -> int:
    return len(self.lengths)

  @property
  def starts(self) -> np.ndarray:
    return exclusive_cumsum(self.lengths)

  def row_ids(self) -> np.ndarray:
    return np.repeat(np.arange(self.num_rows), self.lengths)

  def rows(self) -> list[np.ndarray]:
    return split_rows(self.values, self.lengths)


def exclusive_cumsum(lengths: np.ndarray) -> np.ndarray:
  out = np.zeros(len(lengths), dtype=np.int64)
  np.cumsum(lengths[:-1], out=out[1:])
  return out


def local_positions(lengths: np.ndarray) -> np.ndarray:
  """Position of every flat element inside its row."""
  total = int(lengths.sum())
  return np.arange(total) - np.repeat(exclusive_cumsum(lengths), lengths)


def from_rows(rows: Sequence[np.ndarray]) -> Ragged:
  """Rows (id arrays or lists) as one Ragged."""
  lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
  values = (np.concatenate([np.asarray(r, dtype=ID_DTYPE) for r in rows]) if rows
            else np.zeros(0, ID_DTYPE))
  return Ragged(values.astype(ID_DTYPE, copy=False), lengths)


def concat_ragged(parts: Sequence[Ragged]) -> Ragged:
  """Rows of parts[0], then of parts[1], …"""
  if not parts:
    return Ragged(np.zeros(0, ID_DTYPE), np.zeros(0, np.int64))
  if len(parts) == 1:
    return parts[0]
  return Ragged(np.concatenate([p.values for p in parts]),
                np.concatenate([p.lengths for p in parts]))


def head_rows(r: Ragged, n: int) -> Ragged:
  """The first n rows."""
  if r.num_rows <= n:
    return r
  lengths = r.lengths[:n]
  return Ragged(r.values[:int(lengths.sum())], lengths)


def split_rows(values: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
  """Views of `values` for each row (faster than np.split for many small rows)."""
  bounds = np.zeros(len(lengths) + 1, dtype=np.int64)
  np.cumsum(lengths, out=bounds[1:])
  b = bounds.tolist()
  return [values[b[i]:b[i + 1]] for i in range(len(lengths))]


def uniform_int(rng: np.random.Generator, low, high, size=None) -> np.ndarray:
  """Integers uniform in [low, high] (inclusive), elementwise for array bounds."""
  low = np.asarray(low, dtype=np.int64)
  high = np.asarray(high, dtype=np.int64)
  if size is None:
    size = np.broadcast(low, high).shape
  span = (high - low + 1).astype(np.float64)
  return low + (rng.random(size) * span).astype(np.int64)


def gather_segments(source: np.ndarray, seg_starts: np.ndarray, seg_lengths: np.ndarray,
                    use_native: bool = True) -> np.ndarray:
  """Concatenation of source[s:s + l] for every (s, l), in order (zero lengths allowed)."""
  seg_starts = np.asarray(seg_starts, dtype=np.int64).ravel()
  seg_lengths = np.asarray(seg_lengths, dtype=np.int64).ravel()
  total = int(seg_lengths.sum())
  kernels = native.get(use_native)
  if kernels is not None and source.dtype == ID_DTYPE:
    out = np.empty(total, dtype=ID_DTYPE)
    kernels.gather_segments(np.ascontiguousarray(source), np.ascontiguousarray(seg_starts),
                            np.ascontiguousarray(seg_lengths), out)
    return out
  offsets = seg_starts - exclusive_cumsum(seg_lengths)
  return source[np.repeat(offsets, seg_lengths) + np.arange(total)]


class SourceBuffer:
  """One flat array the segments of a block's inputs and outputs are gathered from."""

  def __init__(self):
    self._parts: list[np.ndarray] = []
    self._size = 0

  def add(self, values) -> int:
    """Appends values; returns their offset in the buffer."""
    values = np.asarray(values, dtype=ID_DTYPE).ravel()
    offset = self._size
    self._parts.append(values)
    self._size += len(values)
    return offset

  def build(self) -> np.ndarray:
    return np.concatenate(self._parts) if self._parts else np.zeros(0, ID_DTYPE)


def assemble_rows(source: np.ndarray, seg_starts: np.ndarray,
                  seg_lengths: np.ndarray) -> Ragged:
  """Rows made of segments: seg_* are [B, S] (row r = its S segments in order)."""
  seg_lengths = np.asarray(seg_lengths, dtype=np.int64)
  return Ragged(gather_segments(source, seg_starts, seg_lengths), seg_lengths.sum(axis=1))


def concat_rows(parts: Sequence["Ragged | np.ndarray"], num_rows: int) -> Ragged:
  """Row r = parts[0] row r + parts[1] row r + …; a plain array part is the same for every row."""
  buf = SourceBuffer()
  seg_starts, seg_lengths = [], []
  for part in parts:
    if isinstance(part, Ragged):
      seg_starts.append(buf.add(part.values) + exclusive_cumsum(part.lengths))
      seg_lengths.append(part.lengths)
    else:  # One copy of a constant part serves every row.
      seg_starts.append(np.full(num_rows, buf.add(part), dtype=np.int64))
      seg_lengths.append(np.full(num_rows, len(part), dtype=np.int64))
  return assemble_rows(buf.build(), np.stack(seg_starts, 1), np.stack(seg_lengths, 1))


def to_padded(values: np.ndarray, lengths: np.ndarray, fill, width: int | None = None,
              dtype=None) -> tuple[np.ndarray, np.ndarray]:
  """[B, W] matrix holding each row left-aligned, and the mask of real entries."""
  width = int(lengths.max(initial=0)) if width is None else width
  mask = np.arange(width) < lengths[:, None]
  out = np.full((len(lengths), width), fill, dtype=dtype or values.dtype)
  out[mask] = values
  return out, mask


class _PackedRows:
  """Each row's (value, row-local position) pairs packed into one unsigned key and sorted.

  Keys are uint32 when value and position bits fit (half the memory traffic), else uint64.
  Sorting short rows is fast in numpy (vectorised small-array sort); padding sorts last.
  """

  def __init__(self, values: np.ndarray, lengths: np.ndarray, last: bool = False):
    width = int(lengths.max())
    self.pos_bits = max(1, (width - 1).bit_length())
    value_bits = max(1, int(values.max()).bit_length())
    if int(values.min()) < 0:
      raise ValueError("packed row keys need non-negative values")
    if value_bits + self.pos_bits <= 32:
      dtype = np.uint32
    elif value_bits + self.pos_bits <= 64:
      dtype = np.uint64
    else:
      raise ValueError(f"values of {value_bits} bits do not fit a sort key")
    self.dtype = dtype
    self.pos_mask = dtype((1 << self.pos_bits) - 1)
    local = local_positions(lengths)
    if last:  # Equal values then sort by descending position: the run starts at the last one.
      local = int(self.pos_mask) - local
    packed = values.astype(dtype)
    packed <<= dtype(self.pos_bits)
    packed |= local.astype(dtype)
    self.keys, self.mask = to_padded(packed, lengths, np.iinfo(dtype).max, width)
    self.keys.sort(axis=1)
    self.last = last

  def run_starts(self) -> np.ndarray:
    """True where a key's value differs from the previous key's (first of each equal run)."""
    starts = np.empty(self.keys.shape, dtype=bool)
    starts[:, 0] = True
    np.greater(self.keys[:, 1:] ^ self.keys[:, :-1], self.pos_mask, out=starts[:, 1:])
    starts &= self.mask
    return starts

  def positions(self) -> np.ndarray:
    """Row-local position of each sorted key."""
    local = (self.keys & self.pos_mask).astype(np.int64)
    return int(self.pos_mask) - local if self.last else local


def shuffle_rows(rng: np.random.Generator, values: np.ndarray, lengths: np.ndarray,
                 use_native: bool = True) -> np.ndarray:
  """Each row uniformly permuted (independently); returns the new flat values.

  A Fisher-Yates shuffle per row driven by one random 64-bit word per element: for i = n-1 .. 1,
  element i swaps with element floor(U_i * (i + 1)), U_i = (word_i >> 11) / 2**53 (bias below
  n / 2**53). The C kernel runs it row by row; the numpy fallback runs step i for all rows at once
  and gives the same permutation.
  """
  out = np.array(values, dtype=ID_DTYPE, copy=True)
  lengths = np.asarray(lengths, dtype=np.int64)
  words = rng.bit_generator.random_raw(len(out))
  if len(out) == 0:
    return out
  kernels = native.get(use_native)
  if kernels is not None:
    kernels.shuffle_rows(out, np.ascontiguousarray(lengths), words)
    return out
  starts = exclusive_cumsum(lengths)
  uniform = (words >> np.uint64(11)).astype(np.float64) * 2.0**-53
  for i in range(int(lengths.max()) - 1, 0, -1):
    rows = np.flatnonzero(lengths > i)
    here = starts[rows] + i
    there = starts[rows] + (uniform[here] * (i + 1)).astype(np.int64)
    out[here], out[there] = out[there], out[here].copy()
  return out


def _sorted_runs(values: np.ndarray, lengths: np.ndarray,
                 last: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Rows sorted by value: (flat index of each element in sorted order, run-start flags)."""
  rows = _PackedRows(values, lengths, last)
  starts = rows.run_starts()[rows.mask]
  order = rows.positions()[rows.mask] + np.repeat(exclusive_cumsum(lengths), lengths)
  return order, starts


def first_occurrence_mask(values: np.ndarray, lengths: np.ndarray,
                          use_native: bool = True) -> np.ndarray:
  """True where an element is the first of its value within its row (values >= 0)."""
  if len(values) == 0:
    return np.zeros(0, dtype=bool)
  kernels = native.get(use_native)
  if kernels is not None:
    out = np.empty(len(values), dtype=bool)
    kernels.first_occurrence(np.ascontiguousarray(values, dtype=np.int32),
                             np.ascontiguousarray(lengths, dtype=np.int64), out)
    return out
  out = np.zeros(len(values), dtype=bool)
  order, starts = _sorted_runs(values, lengths)
  out[order[starts]] = True
  return out


def group_representatives(values: np.ndarray, lengths: np.ndarray, last: bool = False,
                          use_native: bool = True) -> np.ndarray:
  """For each flat element, the flat index of the first (or last) equal element of its row.

  The C kernel uses a hash map per row; the numpy fallback sorts each row (values >= 0).
  """
  reps = np.empty(len(values), dtype=np.int64)
  if len(values) == 0:
    return reps
  kernels = native.get(use_native)
  if kernels is not None:
    kernels.group_representatives(np.ascontiguousarray(values, dtype=np.int32),
                                  np.ascontiguousarray(lengths, dtype=np.int64), last, reps)
    return reps
  order, starts = _sorted_runs(values, lengths, last)
  reps[order] = order[starts][np.cumsum(starts) - 1]
  return reps


def balls_in_bins(rng: np.random.Generator, balls: np.ndarray, bins: np.ndarray) -> np.ndarray:
  """Per row, `balls` balls thrown uniformly into `bins` bins (a multinomial with equal cells).

  Returns the flat bin counts (row r's bins are consecutive, sum(bins) in all).
  """
  balls = np.asarray(balls, dtype=np.int64)
  bins = np.asarray(bins, dtype=np.int64)
  bin_offsets = exclusive_cumsum(bins)
  per_ball_bins = np.repeat(bins, balls)
  labels = np.repeat(bin_offsets, balls) + (rng.random(len(per_ball_bins)) * per_ball_bins).astype(
      np.int64)
  return np.bincount(labels, minlength=int(bins.sum()))


def distinct_draws(rng: np.random.Generator, sizes: np.ndarray, alphabet_size: int,
                   use_native: bool = True) -> np.ndarray:
  """Per row r, sizes[r] distinct indices in [0, alphabet_size), uniformly (an ordered sample
  without replacement), flat.

  Sequential rejection: each draw is floor(U * alphabet_size) from one random 64-bit word
  (U = (word >> 11) / 2**53), skipped if the row holds it already. Words are drawn in batches; when
  a batch runs out, more are appended and the rows are drawn again from the start, which
  reproduces the same draws, so the result depends only on the generator's stream.
  """
  sizes = np.ascontiguousarray(sizes, dtype=np.int64)
  if (sizes > alphabet_size).any() or (sizes < 0).any():
    raise ValueError(f"cannot draw {int(sizes.max())} distinct ids from {alphabet_size}")
  out = np.empty(int(sizes.sum()), dtype=np.int64)
  # Expected draws for a row of size k: alphabet * (H(alphabet) - H(alphabet - k)).
  k = sizes.astype(np.float64)
  expected = float(np.sum(alphabet_size * (np.log(alphabet_size + 0.5)
                                           - np.log(alphabet_size - k + 0.5))))
  words = rng.bit_generator.random_raw(int(expected * 1.1) + 64)
  kernels = native.get(use_native)
  while True:
    if kernels is not None:
      used = kernels.distinct_draws(sizes, int(alphabet_size), words, out)
    else:
      used = _python_distinct_draws(sizes, int(alphabet_size), words, out)
    if used >= 0:
      return out
    words = np.concatenate([words, rng.bit_generator.random_raw(len(words) // 2 + 64)])


def _python_distinct_draws(sizes: np.ndarray, alphabet_size: int, words: np.ndarray,
                           out: np.ndarray) -> int:
  """The C kernel's procedure in Python: words used, or -1 if they ran out."""
  uniform = ((words >> np.uint64(11)).astype(np.float64) * 2.0**-53 * alphabet_size).astype(
      np.int64).tolist()
  used = written = 0
  for size in sizes.tolist():
    seen = set()
    while len(seen) < size:
      if used == len(uniform):
        return -1
      index = uniform[used]
      used += 1
      if index not in seen:
        seen.add(index)
        out[written] = index
        written += 1
  return used


def random_subset_mask(rng: np.random.Generator, lengths: np.ndarray) -> np.ndarray:
  """Per row of length n: a subset whose size is uniform on 0..n and uniform given its size.

  Each position is kept with probability p, p ~ U(0, 1) per row: P(subset S) = |S|!(n-|S|)!/(n+1)!.
  """
  p = np.repeat(rng.random(len(lengths)), lengths)
  return rng.random(len(p)) < p


def draw_accepted(rng: np.random.Generator, n: int,
                  draw: Callable[[np.random.Generator, int], dict[str, np.ndarray]],
                  accept: Callable[[dict[str, np.ndarray]], np.ndarray]) -> dict[str, np.ndarray]:
  """n i.i.d. draws of `draw` conditioned on `accept` (rejection sampling, vectorised)."""
  chunks, have, attempts = [], 0, 0
  batch = n
  while have < n:
    params = draw(rng, batch)
    keep = accept(params)
    kept = int(keep.sum())
    chunks.append({k: v[keep] for k, v in params.items()})
    have += kept
    attempts += batch
    if attempts > 1000 * n + 10000 and have == 0:
      raise ValueError("the sampler's parameters are never accepted: check the length range")
    # Next batch sized from the observed acceptance rate, with a margin.
    rate = max(have / attempts, 1e-3)
    batch = int((n - have) / rate * 1.2) + 8
  merged = {k: np.concatenate([c[k] for c in chunks])[:n] for k in chunks[0]}
  return merged


def row_matches(values: np.ndarray, positions: np.ndarray, query_values: np.ndarray,
                query_starts: np.ndarray, query_lengths: np.ndarray) -> np.ndarray:
  """Whether values[p : p + len] == the query for each (p, query) candidate (vectorised)."""
  alive = np.ones(len(positions), dtype=bool)
  if len(positions) == 0:
    return alive
  for j in range(int(query_lengths.max())):
    active = alive & (j < query_lengths)
    if not active.any():
      break
    idx = np.flatnonzero(active)
    alive[idx] = values[positions[idx] + j] == query_values[query_starts[idx] + j]
  return alive
