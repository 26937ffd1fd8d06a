"""Vectorised samplers of the nine binary simple tasks (SPEC §1.2): inputs a <extra_id_2> b.

Parameters are drawn for a batch of candidates and rejected as a whole when len(a) + 1 + len(b)
falls outside the length range, as the release re-draws the whole sample.
"""

from __future__ import annotations

import numpy as np

from synthetic_pretraining.generators import ragged
from synthetic_pretraining.generators import setops
from synthetic_pretraining.generators.ragged import Ragged
from synthetic_pretraining.generators.simple_base import DEFAULT_LENGTH_RANGE, SimpleTask


def _ones(n: int) -> np.ndarray:
  return np.ones(n, dtype=np.int64)


class _BinaryTask(SimpleTask):
  binary = True

  def total_ok(self, a_len: np.ndarray, b_len: np.ndarray) -> np.ndarray:
    lo, hi = self.length_range
    total = a_len + 1 + b_len
    return (total >= lo) & (total <= hi)


class CountTask(_BinaryTask):
  """m ~ U[min-2, max-2]; c ~ U[0, m] copies of a query token and m - c random tokens, shuffled."""

  name = "count"
  min_length = 3

  def draw_block(self, rng, n):
    lo, hi = self.length_range
    m = self.uniform(rng, lo - 2, hi - 2, n)
    query = self.tokens(rng, n)
    rows = np.repeat(np.arange(n), m)
    # The copies' positions after the shuffle: a subset of size ~ U[0, m], uniform given its size.
    copies = ragged.random_subset_mask(rng, m)
    seq = np.where(copies, query[rows], self.tokens(rng, int(m.sum())))
    counts = np.bincount(rows, weights=seq == query[rows], minlength=n).astype(np.int64)
    return (Ragged(seq, m), Ragged(query, _ones(n))), self.encoded_numbers(counts)


class _OccurrenceTask(_BinaryTask):
  """a = sequence, b = query, drawn by one of the release's two samplers.

  ">= 1 occurrence": q ~ U[1, q_max], len(a) ~ U[ceil(q / prop), max-1-q], k ~ U[1, len(a) // q]
  copies of b planted among len(a) - kq random tokens split multinomially into k + 1 chunks.
  "No occurrence": with probability p_query_longer a query longer than a, else len(a) ~ U[min, max]
  and len(b) ~ U[min, len(a)], both re-drawn while str(b)[1:-1] occurs in str(a). The whole sample
  (sampler choice included) is re-drawn when len(a) + 1 + len(b) leaves the length range.

  Args:
    p_occurrence: probability of the ">= 1 occurrence" sampler (release: search 0.5, delete 0.75).
    query_seq_max_proportion: prop above (release: 0.5; it needs q / prop integral, we round up).
    p_query_longer: see above (release: 0.01).
  """

  p_occurrence_default = 0.5

  def __init__(self, spec, length_range=DEFAULT_LENGTH_RANGE, alphabet=None,
               p_occurrence: float | None = None, query_seq_max_proportion: float = 0.5,
               p_query_longer: float = 0.01):
    super().__init__(spec, length_range, alphabet)
    self.p_occurrence = self.p_occurrence_default if p_occurrence is None else float(p_occurrence)
    self.query_seq_max_proportion = float(query_seq_max_proportion)
    self.p_query_longer = float(p_query_longer)
    lo, hi = self.length_range
    self.max_query_length = int((hi - 1) / (1 + 1 / self.query_seq_max_proportion))
    if not 0 <= self.p_occurrence <= 1 or not 0 <= self.p_query_longer <= 1:
      raise ValueError(f"{self.name}: probabilities must lie in [0, 1]")
    if self.p_occurrence > 0 and self.max_query_length < 1:
      raise ValueError(f"{self.name}: length_range {self.length_range} leaves no room for a query")
    if self.p_occurrence < 1 and lo >= hi:
      raise ValueError(f"{self.name}: the no-occurrence sampler needs min < max")

  def _draw_params(self, rng, m):
    lo, hi = self.length_range
    prop = self.query_seq_max_proportion
    occurs = rng.random(m) < self.p_occurrence
    # ">= 1 occurrence": query q, sequence length s >= q / prop, k copies of the query in it.
    q_occ = self.uniform(rng, 1, max(self.max_query_length, 1), m)
    s_occ = self.uniform(rng, np.ceil(q_occ / prop).astype(np.int64), hi - 1 - q_occ)
    k_occ = self.uniform(rng, 1, np.maximum(s_occ // q_occ, 1))
    # "No occurrence": rarely a query longer than the sequence, else q ~ U[min, s].
    longer = rng.random(m) < self.p_query_longer
    q_long = self.uniform(rng, lo + 1, hi, m)
    s_long = self.uniform(rng, 0, q_long - 1)
    s_none = self.uniform(rng, lo, hi, m)
    q_none = self.uniform(rng, lo, s_none)
    return {
        "occurs": occurs,
        "longer": ~occurs & longer,
        "q": np.where(occurs, q_occ, np.where(longer, q_long, q_none)),
        "s": np.where(occurs, s_occ, np.where(longer, s_long, s_none)),
        "k": np.where(occurs, k_occ, 0),
    }

  def draw_pairs(self, rng, n):
    """Draws (params, sequences a, queries b, planted first-occurrence position)."""
    p = ragged.draw_accepted(rng, n, self._draw_params, lambda p: self.total_ok(p["s"], p["q"]))
    q, s, k = p["q"], p["s"], p["k"]
    filler_len = s - k * q
    queries = self.tokens(rng, int(q.sum()))
    filler = self.tokens(rng, int(filler_len.sum()))
    # "No occurrence" (query not longer): re-draw both while the query's text occurs in a's text.
    check = ~p["occurs"] & ~p["longer"]
    for _ in range(100_000):
      bad = self._text_contains(filler, filler_len, queries, q, check) if check.any() else check
      if not bad.any():
        break
      for values, lengths in ((filler, filler_len), (queries, q)):
        positions = np.flatnonzero(np.repeat(bad, lengths))
        values[positions] = self.tokens(rng, len(positions))
      check = bad
    else:
      raise ValueError(f"{self.name}: cannot draw a sequence free of the query; widen the "
                       "alphabet or raise the minimum length")

    # a = chunk_0 Q chunk_1 Q … Q chunk_k, the filler split multinomially into k + 1 chunks.
    chunks = k + 1
    chunk_sizes = ragged.balls_in_bins(rng, filler_len, chunks)
    chunk_rows = np.repeat(np.arange(n), chunks)
    is_last = ragged.local_positions(chunks) == k[chunk_rows]
    buf = ragged.SourceBuffer()
    filler_at = buf.add(filler)
    queries_at = buf.add(queries)
    source = buf.build()
    q_starts = ragged.exclusive_cumsum(q)
    seg_starts = np.stack([filler_at + ragged.exclusive_cumsum(chunk_sizes),
                           queries_at + q_starts[chunk_rows]], 1)
    seg_lengths = np.stack([chunk_sizes, np.where(is_last, 0, q[chunk_rows])], 1)
    a = Ragged(ragged.gather_segments(source, seg_starts, seg_lengths), s)
    b = Ragged(queries, q)
    planted = np.where(p["occurs"], chunk_sizes[ragged.exclusive_cumsum(chunks)], s)
    return p, a, b, planted

  @staticmethod
  def _text_contains(seq, seq_len, query, q_len, rows_to_check) -> np.ndarray:
    """Rows whose query text str(b)[1:-1] occurs in str(a): the release's test, true whenever b
    is a sub-list of a and also for digit-level matches such as "5, 1" in "[5, 12]".

    Decided on the ids, without building strings: a one-id query matches inside one id's digits;
    a longer one matches at a window a[i : i + len(b)] whose first id ends with b[0]'s digits,
    whose last id starts with b[-1]'s digits and whose inner ids equal b[1:-1].
    """
    n = len(seq_len)
    bad = np.zeros(n, dtype=bool)
    if not rows_to_check.any():
      return bad
    q_starts = ragged.exclusive_cumsum(q_len)
    first_q = query[np.minimum(q_starts, max(len(query) - 1, 0))].astype(np.int64)
    last_q = query[np.maximum(q_starts + q_len - 1, 0)].astype(np.int64)
    rows = np.repeat(np.arange(n), seq_len)
    local = ragged.local_positions(seq_len)
    ids = seq.astype(np.int64)

    single = np.flatnonzero((rows_to_check & (q_len == 1))[rows])
    if len(single):
      hit = _digits_inside(ids[single], first_q[rows[single]])
      bad[rows[single][hit]] = True

    longer = rows_to_check & (q_len >= 2)
    window = longer[rows] & (local <= (seq_len - q_len)[rows])
    second = query[np.minimum(q_starts + 1, max(len(query) - 1, 0))]
    # Queries of 3+ ids: the window's second id must equal b[1] (cheap filter first).
    inner_first = np.ones(len(seq), dtype=bool)
    inner_first[:-1] = seq[1:] == second[rows[:-1]]
    inner_first[-1:] = False
    window &= (q_len[rows] == 2) | inner_first
    starts = np.flatnonzero(window)
    if len(starts):
      r = rows[starts]
      keep = (_ends_with(ids[starts], first_q[r])
              & _starts_with(ids[starts + q_len[r] - 1], last_q[r]))
      starts, r = starts[keep], r[keep]
      inner = q_len[r] - 2
      match = np.ones(len(starts), dtype=bool)
      check = np.flatnonzero(inner > 0)
      if len(check):
        match[check] = ragged.row_matches(seq, starts[check] + 1, query,
                                          q_starts[r[check]] + 1, inner[check])
      bad[r[match]] = True
    return bad


_POWERS_OF_TEN = 10 ** np.arange(19, dtype=np.int64)


def _num_digits(values: np.ndarray) -> np.ndarray:
  """Decimal digits of non-negative ints (0 has one)."""
  return 1 + (values[:, None] >= _POWERS_OF_TEN[1:11]).sum(axis=1)


def _ends_with(values: np.ndarray, suffix: np.ndarray) -> np.ndarray:
  """str(value).endswith(str(suffix)), elementwise."""
  d = _num_digits(suffix)
  return (_num_digits(values) >= d) & (values % _POWERS_OF_TEN[d] == suffix)


def _starts_with(values: np.ndarray, prefix: np.ndarray) -> np.ndarray:
  """str(value).startswith(str(prefix)), elementwise."""
  extra = _num_digits(values) - _num_digits(prefix)
  return (extra >= 0) & (values // _POWERS_OF_TEN[np.maximum(extra, 0)] == prefix)


def _digits_inside(values: np.ndarray, part: np.ndarray) -> np.ndarray:
  """str(part) in str(value), elementwise."""
  d = _num_digits(part)
  spare = _num_digits(values) - d
  found = np.zeros(len(values), dtype=bool)
  for shift in range(int(spare.max(initial=-1)) + 1):
    found |= (spare >= shift) & ((values // _POWERS_OF_TEN[shift]) % _POWERS_OF_TEN[d] == part)
  return found


class SearchTask(_OccurrenceTask):
  """Answer spec.encode("yes") if b occurs in a as a contiguous sub-list, else "no"."""

  name = "search"
  p_occurrence_default = 0.5

  def draw_block(self, rng, n):
    p, a, b, _ = self.draw_pairs(rng, n)
    return (a, b), self.encoded_words(["no", "yes"], p["occurs"].astype(np.int64))


class DeleteTask(_OccurrenceTask):
  """a with the first occurrence of b removed."""

  name = "delete"
  p_occurrence_default = 0.75

  def draw_block(self, rng, n):
    p, a, b, first = self.draw_pairs(rng, n)
    q, s = b.lengths, a.lengths
    # Random filler before the planted copy may itself hold an earlier occurrence.
    rows = np.repeat(np.arange(n), s)
    local = ragged.local_positions(s)
    candidates = np.flatnonzero(p["occurs"][rows] & (local < first[rows])
                                & (a.values == b.values[b.starts][rows]))
    if len(candidates):
      c_rows = rows[candidates]
      found = ragged.row_matches(a.values, candidates, b.values, b.starts[c_rows], q[c_rows])
      np.minimum.at(first, c_rows[found], local[candidates[found]])
    removed = np.where(p["occurs"], q, 0)
    seg_starts = np.stack([a.starts, a.starts + first + removed], 1)
    seg_lengths = np.stack([first, s - first - removed], 1)
    out = Ragged(ragged.gather_segments(a.values, seg_starts, seg_lengths), s - removed)
    return (a, b), out


class SortTask(_BinaryTask):
  """b = o ~ U[min/2, (max-1)/2] order tokens; a = m ~ U[o, max-1-o] tokens in o runs whose tokens
  are drawn from b, shuffled -> a stably sorted by the (last) index of each token in b."""

  name = "sort"
  min_length = 2

  def draw_block(self, rng, n):
    lo, hi = self.length_range

    def draw(rng, m):
      o = self.uniform(rng, lo // 2, (hi - 1) // 2, m)
      return {"o": o, "m": self.uniform(rng, o, hi - 1 - o)}

    p = ragged.draw_accepted(rng, n, draw, lambda p: self.total_ok(p["m"], p["o"]))
    o, m = p["o"], p["m"]
    order = self.tokens(rng, int(o.sum()))
    order_starts = ragged.exclusive_cumsum(o)
    sizes = 1 + ragged.balls_in_bins(rng, m - o, o)
    part_rows = np.repeat(np.arange(n), o)
    choice = order_starts[part_rows] + (rng.random(len(sizes)) * o[part_rows]).astype(np.int64)
    a = ragged.shuffle_rows(rng, np.repeat(order[choice], sizes), m)
    rank = ragged.group_representatives(order, o, last=True)[choice]
    counts = np.bincount(rank, weights=sizes, minlength=len(order)).astype(np.int64)
    return (Ragged(a, m), Ragged(order, o)), Ragged(np.repeat(order, counts), m)


class ReplaceTask(_BinaryTask):
  """a = m ~ U[min-3, max-3] tokens; b = [key, value], key uniform among a's distinct tokens."""

  name = "replace"
  min_length = 4

  def draw_block(self, rng, n):
    lo, hi = self.length_range
    m = self.uniform(rng, lo - 3, hi - 3, n)
    seq = self.tokens(rng, int(m.sum()))
    starts = ragged.exclusive_cumsum(m)
    rows = np.repeat(np.arange(n), m)
    key = np.zeros(n, dtype=seq.dtype)
    todo = np.ones(n, dtype=bool)
    # A uniform position, kept with probability 1 / multiplicity: uniform over distinct tokens.
    while todo.any():
      pick = seq[starts + (rng.random(n) * m).astype(np.int64)]
      multiplicity = np.bincount(rows, weights=seq == pick[rows], minlength=n)
      keep = todo & (rng.random(n) * multiplicity < 1)
      key[keep] = pick[keep]
      todo &= ~keep
    value = self.tokens(rng, n)
    out = np.where(seq == key[rows], value[rows], seq)
    b = Ragged(np.stack([key, value], 1).ravel(), _ones(n) * 2)
    return (Ragged(seq, m), b), Ragged(out, m)


class _SetOperationTask(_BinaryTask):
  """T ~ U[min-1, max-1]; len(a) ~ U[0, T], len(b) = T - len(a); a and b drawn i.i.d. from a pool of
  T // 2 distinct tokens. The output keeps CPython's set iteration order (see `setops`)."""

  min_length = 3

  def __init__(self, spec, length_range=DEFAULT_LENGTH_RANGE, alphabet=None):
    super().__init__(spec, length_range, alphabet)
    largest_pool = (self.length_range[1] - 1) // 2
    if largest_pool > self.alphabet.size:
      raise ValueError(f"{self.name}: pools of {largest_pool} distinct tokens need an alphabet of "
                       f"at least that size (got {self.alphabet.size})")

  operation = ""  # One of setops.OPERATIONS.

  def draw_block(self, rng, n):
    lo, hi = self.length_range
    total = self.uniform(rng, lo - 1, hi - 1, n)
    a_len = self.uniform(rng, 0, total)
    b_len = total - a_len
    pool_sizes = total // 2
    pools = self.alphabet.ids[ragged.distinct_draws(rng, pool_sizes, self.alphabet.size)]
    pool_starts = ragged.exclusive_cumsum(pool_sizes)

    def from_pool(lengths):
      scaled = rng.random(int(lengths.sum()))
      scaled *= np.repeat(pool_sizes, lengths)
      picks = scaled.astype(np.int64)
      picks += np.repeat(pool_starts, lengths)
      return Ragged(pools[picks], lengths)

    a, b = from_pool(a_len), from_pool(b_len)
    return (a, b), setops.set_operation_rows(self.operation, a, b)


class UnionTask(_SetOperationTask):
  name = "union"
  operation = "union"


class IntersectTask(_SetOperationTask):
  name = "intersect"
  operation = "intersect"


class Set1MinusSet2Task(_SetOperationTask):
  name = "set1_minus_set2"
  operation = "a_minus_b"


class Set2MinusSet1Task(_SetOperationTask):
  name = "set2_minus_set1"
  operation = "b_minus_a"

