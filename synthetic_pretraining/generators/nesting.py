"""A nesting-dependency artificial language (after Ri & Tsuruoka 2022) for span corruption.

The paper pre-trains on "nesting_language" data produced outside its release (SPEC §2.3): the
nesting-dependency artificial language of Ri & Tsuruoka (2022, "Pretraining with Artificial
Language: Studying Transferable Knowledge in Language Models", ACL), which builds on the
nesting-parentheses corpus of Papadimitriou & Jurafsky (2020, "Learning Music Helps You Read",
EMNLP). The release holds neither that generator nor its id mapping, so this module is our design of
the same idea, with every parameter exposed:

* Tokens come in head/tail pairs: pair r has a head id and a tail id (`head_ids[r]`, `tail_ids[r]`).
  A sentence is a well-nested sequence of dependencies: every head is later closed by its own tail,
  and dependencies nest like brackets (h1 h2 t2 h3 t3 t1 …; never crossing).
* Pairs are Zipf-distributed: a new head is pair r (r = 0 … num_pairs − 1) with probability
  ∝ 1 / (r + 1) ** `zipf_exponent` (default 1, Zipf's law). A tail always repeats its head's pair,
  so head and tail tokens each follow the same Zipf law.
* Stack discipline: a sentence of target length L (even) is written left to right; at each position
  the generator opens a new pair (pushes a Zipf-drawn head) with probability `open_prob`, otherwise
  closes the innermost open pair (pops, emits its tail). It must open when nothing is open, and must
  close when the open pairs exactly fill the positions left (so everything is closed at the end),
  or when `max_depth` pairs are open.
* Sentence lengths are even and uniform in `sentence_length_range` (default 4–64 tokens, mean 34,
  near natural sentence lengths in subword tokens). An example packs whole sentences while they fit
  in `max_length` (default 256: the authors' nesting run used 256/256 input/target lengths), so
  every example is itself well nested and at most `max_length` long (mean about 235 by default).
* Ids: the `vocab_size` ids (default: all of `spec`'s ordinary symbol range, rounded down to an even
  count; 31,998 = 15,999 pairs for T5) start at `spec.symbol_low`. Pair r takes ids
  `symbol_low + 2r` (head) and `symbol_low + 2r + 1` (tail), so frequent pairs get low ids, much as
  frequent SentencePiece pieces do; with `id_shuffle_seed` the pairs' id slots are permuted by a
  fixed seed instead. Pad (0) and EOS (1) never appear.
* Output: `(inputs, targets)` = (empty, token ids), no EOS. The SeqIO layer applies T5 span
  corruption (noise density 0.15, mean span length 3) as the release does.

Defaults that are our choice (no source fixes them): open_prob 0.4 — below 1/2 the open-pair
depth stays shallow (geometric, mean about 2 away from sentence ends), like dependency depth in
natural sentences; sentence_length_range (4, 64); packing to 256. `is_well_nested` checks the
structure, and `NestingLanguageTask.head_to_tail` gives the pairing.
"""

from __future__ import annotations

import functools
from typing import Iterable, Mapping

import numpy as np

from synthetic_pretraining.generators import ragged
from synthetic_pretraining.generators.base import Example, SyntheticTask
from synthetic_pretraining.vocab_spec import VocabSpec

DEFAULT_OPEN_PROB = 0.4
DEFAULT_ZIPF_EXPONENT = 1.0
DEFAULT_SENTENCE_LENGTH_RANGE = (4, 64)
DEFAULT_MAX_LENGTH = 256


def is_well_nested(ids: Iterable[int], head_to_tail: Mapping[int, int]) -> bool:
  """True when every id is a head or a tail and each tail closes the innermost open head's pair."""
  tails = set(head_to_tail.values())
  stack = []
  for token in ids:
    token = int(token)
    if token in head_to_tail:
      stack.append(head_to_tail[token])
    elif token in tails:
      if not stack or stack.pop() != token:
        return False
    else:
      return False
  return not stack


def zipf_probabilities(num_items: int, exponent: float = DEFAULT_ZIPF_EXPONENT) -> np.ndarray:
  """P(rank r) ∝ 1 / (r + 1) ** exponent for r = 0 … num_items − 1."""
  weights = np.arange(1, num_items + 1, dtype=np.float64) ** -exponent
  return weights / weights.sum()


def _alias_table(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Vose's alias method: O(1) draws from a fixed discrete distribution."""
  n = len(probabilities)
  scaled = probabilities * n
  accept = np.ones(n)
  alias = np.arange(n)
  small = [i for i in range(n) if scaled[i] < 1.0]
  large = [i for i in range(n) if scaled[i] >= 1.0]
  while small and large:
    s, l = small.pop(), large.pop()
    accept[s], alias[s] = scaled[s], l
    scaled[l] -= 1.0 - scaled[s]
    (small if scaled[l] < 1.0 else large).append(l)
  return accept, alias  # Leftovers keep accept 1 (their mass is 1 up to rounding).


def _alias_draw(rng: np.random.Generator, accept: np.ndarray, alias: np.ndarray,
                size: int) -> np.ndarray:
  column = rng.integers(0, len(accept), size=size)
  return np.where(rng.random(size) < accept[column], column, alias[column])


class NestingLanguageTask(SyntheticTask):
  """The paper's `nesting_language` pre-training data: targets only, well-nested head/tail pairs."""

  name = "nesting_language"

  def __init__(self, spec: VocabSpec, *, vocab_size: int | None = None,
               zipf_exponent: float = DEFAULT_ZIPF_EXPONENT, open_prob: float = DEFAULT_OPEN_PROB,
               sentence_length_range: tuple[int, int] = DEFAULT_SENTENCE_LENGTH_RANGE,
               max_length: int = DEFAULT_MAX_LENGTH, max_depth: int | None = None,
               id_shuffle_seed: int | None = None):
    super().__init__(spec)
    if any(spec.symbol_low <= i <= spec.symbol_high for i in (spec.pad_id, spec.eos_id)):
      raise ValueError(f"VocabSpec {spec.name}: symbol range [{spec.symbol_low}, "
                       f"{spec.symbol_high}] overlaps pad/eos ids {spec.pad_id}/{spec.eos_id}")
    available = spec.num_symbols - spec.num_symbols % 2
    vocab_size = available if vocab_size is None else vocab_size
    if vocab_size < 2 or vocab_size % 2 or vocab_size > available:
      raise ValueError(f"nesting_language vocab_size must be even and in [2, {available}] "
                       f"(the symbols of VocabSpec {spec.name}), got {vocab_size}")
    low, high = sentence_length_range
    if low < 2 or low % 2 or high % 2 or low > high:
      raise ValueError("sentence_length_range must be (low, high), both even, 2 <= low <= high; "
                       f"got {sentence_length_range}")
    if high > max_length:
      raise ValueError(f"sentence_length_range {sentence_length_range} exceeds max_length "
                       f"{max_length}")
    if not 0.0 <= open_prob <= 1.0:
      raise ValueError(f"open_prob must be in [0, 1], got {open_prob}")
    if max_depth is not None and max_depth < 1:
      raise ValueError(f"max_depth must be >= 1 or None, got {max_depth}")
    self.vocab_size = vocab_size
    self.num_pairs = vocab_size // 2
    self.zipf_exponent = zipf_exponent
    self.open_prob = open_prob
    self.sentence_length_range = (low, high)
    self.max_length = max_length
    self.max_depth = max_depth
    slots = np.arange(self.num_pairs)
    if id_shuffle_seed is not None:
      slots = np.random.default_rng(id_shuffle_seed).permutation(self.num_pairs)
    self.head_ids = (spec.symbol_low + 2 * slots).astype(np.int32)
    self.tail_ids = self.head_ids + 1
    self.pair_probabilities = zipf_probabilities(self.num_pairs, zipf_exponent)
    self._alias_accept, self._alias = _alias_table(self.pair_probabilities)

  @functools.cached_property
  def head_to_tail(self) -> dict[int, int]:
    return dict(zip(self.head_ids.tolist(), self.tail_ids.tolist()))

  def is_well_nested(self, ids: Iterable[int]) -> bool:
    return is_well_nested(ids, self.head_to_tail)

  def sample(self, rng: np.random.Generator) -> Example:
    return self.sample_block(rng, 1)[0]

  def sample_block(self, rng: np.random.Generator, n: int) -> list[Example]:
    """`n` examples, vectorised over the block (one NumPy step per token position)."""
    if n == 0:
      return []
    tokens, totals = self._sample_flat(rng, n)
    empty = np.zeros(0, np.int32)
    return [(empty, row) for row in np.split(tokens, np.cumsum(totals)[:-1])]

  def sample_ragged(self, rng: np.random.Generator,
                    n: int) -> tuple[ragged.Ragged, ragged.Ragged]:
    if n == 0:
      return ragged.from_rows([]), ragged.from_rows([])
    tokens, totals = self._sample_flat(rng, n)
    inputs = ragged.Ragged(np.zeros(0, ragged.ID_DTYPE), np.zeros(n, np.int64))
    return inputs, ragged.Ragged(np.asarray(tokens, ragged.ID_DTYPE),
                                 np.asarray(totals, np.int64))

  def _sample_flat(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """All tokens of `n` examples concatenated, and each example's length."""
    max_len = self.max_length
    low, high = self.sentence_length_range
    # 1. Sentence lengths; keep the prefix of sentences that fits in max_length.
    columns = max_len // low + 1
    lengths = 2 * rng.integers(low // 2, high // 2 + 1, size=(n, columns))
    ends = np.cumsum(lengths, axis=1)
    keep = ends <= max_len
    totals = np.where(keep, ends, 0).max(axis=1)
    kept_lengths, kept_ends = lengths[keep], ends[keep]
    # 2. For every position: its example row, its index in the row, and the number of positions
    #    left in its sentence (itself included).
    row = np.repeat(np.arange(n), totals)
    starts = np.cumsum(totals) - totals
    pos = np.arange(totals.sum()) - np.repeat(starts, totals)
    remaining = np.zeros((n, max_len), np.int64)
    remaining[row, pos] = np.repeat(kept_ends, kept_lengths) - pos
    # 3. Open/close decisions, one position at a time for all rows (the stack discipline). A row
    #    may open while depth < min(positions left, max_depth): depth and positions left have equal
    #    parity, so after opening every open pair can still close in time. At depth 0 it must open.
    limit = np.ascontiguousarray(remaining.T)
    if self.max_depth is not None:
      np.minimum(limit, self.max_depth, out=limit)
    coin = np.ascontiguousarray((rng.random((n, max_len)) < self.open_prob).T)
    active = np.ascontiguousarray((remaining > 0).T).astype(np.int64)
    opens = np.empty((max_len, n), bool)
    depth = np.zeros(n, np.int64)
    wants_open = np.empty(n, bool)
    for t in range(max_len):  # In-place ufuncs: this loop is most of the generation time.
      np.equal(depth, 0, out=wants_open)
      np.logical_or(wants_open, coin[t], out=wants_open)
      np.less(depth, limit[t], out=opens[t])
      np.logical_and(opens[t], wants_open, out=opens[t])
      depth += 2 * opens[t] - active[t]  # +1 open, -1 close, 0 past the row's end.
    # 4. Match heads with tails: an open at depth d and the close returning to depth d share the
    #    level d; within (row, level), opens and closes alternate in position order.
    opens_flat = opens.T[row, pos]
    # Every row is balanced, so the running sum over the concatenated rows is each row's depth.
    depth_after = np.cumsum(np.where(opens_flat, 1, -1))
    level = depth_after - opens_flat
    order = np.argsort((row * (max_len + 1) + level) * max_len + pos, kind="stable")
    pairs = order.reshape(-1, 2)
    # 5. Zipf-distributed pairs.
    ranks = _alias_draw(rng, self._alias_accept, self._alias, len(pairs))
    tokens = np.empty(len(pos), np.int32)
    tokens[pairs[:, 0]] = self.head_ids[ranks]
    tokens[pairs[:, 1]] = self.tail_ids[ranks]
    return tokens, totals
