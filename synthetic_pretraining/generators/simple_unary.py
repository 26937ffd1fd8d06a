"""Vectorised samplers of the nine unary simple tasks (SPEC §1.2).

Each `draw_block` draws a whole block with numpy and computes the outputs; the distribution is the
release's (its length rejection, partitions and shuffles), not its random stream.
"""

from __future__ import annotations

import numpy as np

from synthetic_pretraining.generators import native
from synthetic_pretraining.generators import ragged
from synthetic_pretraining.generators.simple_base import SimpleTask
from synthetic_pretraining.generators.ragged import Ragged


class _RandomSequenceTask(SimpleTask):
  """x = n i.i.d. tokens, n ~ U[min, max]."""

  def random_rows(self, rng: np.random.Generator, n: int) -> Ragged:
    lo, hi = self.length_range
    lengths = self.uniform(rng, lo, hi, n)
    return Ragged(self.tokens(rng, int(lengths.sum())), lengths)


class IdentityTask(_RandomSequenceTask):
  name = "identity"

  def draw_block(self, rng, n):
    x = self.random_rows(rng, n)
    return (x,), x


class ReverseTask(_RandomSequenceTask):
  name = "reverse"

  def draw_block(self, rng, n):
    x = self.random_rows(rng, n)
    starts = np.repeat(x.starts, x.lengths)
    ends = np.repeat(x.starts + x.lengths - 1, x.lengths)
    flipped = starts + ends - np.arange(len(x.values))
    return (x,), Ragged(x.values[flipped], x.lengths)


class DuplicateTask(_RandomSequenceTask):
  name = "duplicate"

  def draw_block(self, rng, n):
    x = self.random_rows(rng, n)
    return (x,), Ragged(np.repeat(x.values, 2), x.lengths * 2)


class FirstTokenTask(_RandomSequenceTask):
  name = "first_token"

  def draw_block(self, rng, n):
    x = self.random_rows(rng, n)
    return (x,), Ragged(x.values[x.starts], np.ones(n, dtype=np.int64))


class LastTokenTask(_RandomSequenceTask):
  name = "last_token"

  def draw_block(self, rng, n):
    x = self.random_rows(rng, n)
    return (x,), Ragged(x.values[x.starts + x.lengths - 1], np.ones(n, dtype=np.int64))


class LengthTask(_RandomSequenceTask):
  name = "length"

  def draw_block(self, rng, n):
    x = self.random_rows(rng, n)
    return (x,), self.encoded_numbers(x.lengths)


def _runs(task: SimpleTask, rng: np.random.Generator, n: int):
  """The deduplicate sample (= the set sample before shuffling): n ~ U[min, max], k ~ U[1, n] runs.

  Run sizes are 1 + a multinomial split of n - k over k runs; each run is one token (drawn with
  replacement) repeated. Returns (run tokens, run sizes, runs per row, row lengths).
  """
  lo, hi = task.length_range
  lengths = task.uniform(rng, lo, hi, n)
  num_runs = task.uniform(rng, 1, lengths)
  sizes = 1 + ragged.balls_in_bins(rng, lengths - num_runs, num_runs)
  run_tokens = task.tokens(rng, len(sizes))
  return run_tokens, sizes, num_runs, lengths


class SetTask(SimpleTask):
  """Runs of repeated tokens, shuffled -> the distinct tokens in first-occurrence order.

  Drawn without an explicit shuffle: shuffling k one-token "seed" items and n - k items with
  uniform run labels puts the seeds on a uniform k-subset of positions and leaves i.i.d. uniform
  labels on the others. With k ~ U[1, n] that subset is a Bernoulli(p) subset, p ~ U(0, 1),
  conditioned on being non-empty (see `ragged.random_subset_mask`). Seeds take labels in position
  order, which does not change the law since run tokens are i.i.d.
  """

  name = "set"

  def draw_block(self, rng, n):
    lo, hi = self.length_range
    lengths = self.uniform(rng, lo, hi, n)
    starts = ragged.exclusive_cumsum(lengths)
    seed = ragged.random_subset_mask(rng, lengths)
    num_runs = np.add.reduceat(seed, starts, dtype=np.int64)
    while (num_runs == 0).any():  # Condition on k >= 1 (k ~ U[1, n]): re-draw empty subsets.
      empty = np.flatnonzero(num_runs == 0)
      seed[ragged.gather_segments(np.arange(len(seed)), starts[empty], lengths[empty])] = (
          ragged.random_subset_mask(rng, lengths[empty]))
      num_runs[empty] = np.add.reduceat(seed, starts, dtype=np.int64)[empty]
    label = run_labels(lengths, seed, num_runs, rng.random(len(seed)))
    x = self.tokens(rng, int(num_runs.sum()))[label]
    first = ragged.first_occurrence_mask(x, lengths)
    return (Ragged(x, lengths),), Ragged(x[first], np.add.reduceat(first, starts, dtype=np.int64))


def run_labels(lengths: np.ndarray, seed: np.ndarray, num_runs: np.ndarray, uniform: np.ndarray,
               use_native: bool = True) -> np.ndarray:
  """Seeds take their row's run labels 0..k-1 in position order, the other positions the label
  floor(uniform * k); labels are offset by the runs of earlier rows (so they index one flat
  array of run tokens). The C kernel and the numpy fallback give the same labels."""
  kernels = native.get(use_native)
  if kernels is not None:
    label = np.empty(len(seed), dtype=np.int64)
    kernels.run_labels(np.ascontiguousarray(lengths, dtype=np.int64),
                       np.ascontiguousarray(seed, dtype=bool), np.ascontiguousarray(uniform),
                       label)
    return label
  offset = np.repeat(ragged.exclusive_cumsum(num_runs), lengths)
  label = offset + (uniform * np.repeat(num_runs, lengths)).astype(np.int64)
  return np.where(seed, np.cumsum(seed) - 1, label)  # Seeds: their index among all seeds.


class DeduplicateTask(SimpleTask):
  """Runs of repeated tokens (not shuffled) -> consecutive repeats collapsed."""

  name = "deduplicate"

  def draw_block(self, rng, n):
    run_tokens, sizes, num_runs, lengths = _runs(self, rng, n)
    keep = np.ones(len(run_tokens), dtype=bool)
    keep[1:] = run_tokens[1:] != run_tokens[:-1]
    keep[ragged.exclusive_cumsum(num_runs)] = True  # A row's first run always stays.
    run_rows = np.repeat(np.arange(n), num_runs)
    out = Ragged(run_tokens[keep], np.bincount(run_rows[keep], minlength=n))
    return (Ragged(np.repeat(run_tokens, sizes), lengths),), out


class LongestWordTask(SimpleTask):
  """W ~ U[1, max_words] words of total L letters, divided by <extra_id_1> -> first longest word.

  Args:
    max_words: most words per example (default max_length // 2, as the release).
  """

  name = "longest_word"

  def __init__(self, spec, length_range=(10, 220), alphabet=None, max_words: int | None = None):
    super().__init__(spec, length_range, alphabet)
    hi = self.length_range[1]
    self.max_words = hi // 2 if max_words is None else int(max_words)
    if not 1 <= self.max_words <= (hi + 1) // 2:
      raise ValueError(f"longest_word: max_words={self.max_words} must lie in [1, {(hi + 1) // 2}]")

  def draw_block(self, rng, n):
    lo, hi = self.length_range

    def draw(rng, m):
      words = self.uniform(rng, 1, self.max_words, m)
      letters = self.uniform(rng, np.maximum(lo - (words - 1), words), hi - (words - 1))
      return {"words": words, "letters": letters}

    def accept(p):
      total = p["letters"] + p["words"] - 1
      return (total >= lo) & (total <= hi)

    p = ragged.draw_accepted(rng, n, draw, accept)
    words, letters = p["words"], p["letters"]
    word_lengths = 1 + ragged.balls_in_bins(rng, letters - words, words)
    tokens = self.tokens(rng, int(letters.sum()))
    word_starts = ragged.exclusive_cumsum(word_lengths)
    word_rows = np.repeat(np.arange(n), words)
    is_last = np.zeros(len(word_lengths), dtype=bool)
    is_last[np.cumsum(words) - 1] = True

    buf = ragged.SourceBuffer()
    divider_at = buf.add([self.word_divider])
    tokens_at = buf.add(tokens)
    source = buf.build()
    seg_starts = np.stack([tokens_at + word_starts, np.full(len(word_lengths), divider_at)], 1)
    seg_lengths = np.stack([word_lengths, (~is_last).astype(np.int64)], 1)
    x = Ragged(ragged.gather_segments(source, seg_starts, seg_lengths), letters + words - 1)

    row_max = np.maximum.reduceat(word_lengths, ragged.exclusive_cumsum(words))
    candidates = np.flatnonzero(word_lengths == row_max[word_rows])
    first = np.ones(len(candidates), dtype=bool)
    first[1:] = word_rows[candidates[1:]] != word_rows[candidates[:-1]]
    best = candidates[first]
    out = Ragged(ragged.gather_segments(tokens, word_starts[best], word_lengths[best]),
                 word_lengths[best])
    return (x,), out
