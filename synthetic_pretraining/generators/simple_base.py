"""Shared machinery of the 18 simple tasks: knobs, alphabet, prefixes and block assembly."""

from __future__ import annotations

import abc
from typing import Sequence

import numpy as np

from synthetic_pretraining.generators import ragged
from synthetic_pretraining.generators import simple_functions as F
from synthetic_pretraining.generators.base import Example, SyntheticTask
from synthetic_pretraining.vocab_spec import VocabSpec

DEFAULT_LENGTH_RANGE = (10, 220)


def alphabet_array(spec: VocabSpec, alphabet: Sequence[int] | None) -> np.ndarray:
  """The ids sequences are drawn from: the spec's symbol range, or the given distinct ids."""
  if alphabet is None:
    return np.arange(spec.symbol_low, spec.symbol_high + 1, dtype=ragged.ID_DTYPE)
  ids = np.asarray(list(alphabet), dtype=np.int64)
  if ids.ndim != 1 or len(ids) == 0:
    raise ValueError("alphabet must be a non-empty sequence of ids")
  if len(np.unique(ids)) != len(ids):
    raise ValueError("alphabet ids must be distinct")
  if ids.min() < 0 or ids.max() >= spec.vocab_size:
    raise ValueError(f"alphabet ids must lie in [0, {spec.vocab_size}) for vocabulary {spec.name}")
  return ids.astype(ragged.ID_DTYPE)


class Alphabet:
  """Uniform draws with replacement from a set of ids (fast path for a contiguous range)."""

  def __init__(self, ids: np.ndarray):
    self.ids = ids
    self.size = len(ids)
    contiguous = bool(np.all(np.diff(ids) == 1))  # Sorted consecutive ids: a plain range.
    self._low = int(ids[0]) if contiguous else None

  def draw(self, rng: np.random.Generator, size) -> np.ndarray:
    if self._low is not None:
      return rng.integers(self._low, self._low + self.size, size=size, dtype=ragged.ID_DTYPE)
    return self.ids[rng.integers(0, self.size, size=size)]


class IdTable:
  """Encoded strings (numbers, yes/no) looked up for a whole block at once."""

  def __init__(self, encode):
    self._encode = encode
    self._keys: dict[object, int] = {}
    self._values: list[int] = []
    self._starts: list[int] = []
    self._lengths: list[int] = []
    self._arrays = (np.zeros(0, ragged.ID_DTYPE), np.zeros(0, np.int64), np.zeros(0, np.int64))

  def _add(self, key: object) -> None:
    ids = list(self._encode(key))
    self._keys[key] = len(self._starts)
    self._starts.append(len(self._values))
    self._lengths.append(len(ids))
    self._values.extend(ids)

  def _rebuild(self) -> None:
    self._arrays = (np.asarray(self._values, dtype=ragged.ID_DTYPE),
                    np.asarray(self._starts, dtype=np.int64),
                    np.asarray(self._lengths, dtype=np.int64))

  def indices(self, keys: Sequence[object]) -> np.ndarray:
    missing = [k for k in keys if k not in self._keys]
    for key in missing:
      self._add(key)
    if missing:
      self._rebuild()
    return np.asarray([self._keys[k] for k in keys], dtype=np.int64)

  def lookup(self, indices: np.ndarray) -> ragged.Ragged:
    flat, starts, lengths = self._arrays
    lengths = lengths[indices]
    return ragged.Ragged(ragged.gather_segments(flat, starts[indices], lengths), lengths)


class SimpleTask(SyntheticTask):
  """One of the 18 simple tasks: `prefix + x` (unary) or `prefix + a + <extra_id_2> + b`.

  Args:
    spec: the vocabulary.
    length_range: (min, max) of len(x), or of len(a) + 1 + len(b); the prefix is not counted.
    alphabet: ids the sequences are drawn from (default: all the spec's symbols).
  """

  name = ""
  binary = False
  min_length = 1  # Smallest length_range[0] the sampler supports.

  def __init__(self, spec: VocabSpec, length_range: Sequence[int] = DEFAULT_LENGTH_RANGE,
               alphabet: Sequence[int] | None = None):
    super().__init__(spec)
    lo, hi = (int(v) for v in length_range)
    if not self.min_length <= lo <= hi:
      raise ValueError(f"task {self.name}: length_range {tuple(length_range)} must satisfy "
                       f"{self.min_length} <= min <= max")
    self.length_range = (lo, hi)
    self.alphabet = Alphabet(alphabet_array(spec, alphabet))
    self.code_name = F.CODE_NAMES[self.name]
    self.prefix = np.asarray(F.task_prefix(self.name, spec), dtype=ragged.ID_DTYPE)
    self.arg_divider = spec.extra_id(F.ARG_DIVIDER_EXTRA_ID)
    self.word_divider = spec.extra_id(F.WORD_DIVIDER_EXTRA_ID)
    self.empty_marker = spec.extra_id(F.EMPTY_OUTPUT_EXTRA_ID)
    separators = [spec.extra_id(F.TASK_DIVIDER_EXTRA_ID), self.word_divider, self.arg_divider,
                  self.empty_marker]
    if np.isin(self.alphabet.ids, separators).any():
      raise ValueError(f"task {self.name}: the alphabet must not contain the separator ids "
                       f"{separators}")
    self._numbers = IdTable(lambda key: spec.encode(str(key)))
    self._words = IdTable(spec.encode)

  # -- the pure function ------------------------------------------------------------------------
  def output(self, args: Sequence[Sequence[int]]) -> list[int]:
    """Reference output for parsed arguments (with the empty-output marker)."""
    return F.task_output(self.name, args, self.spec)

  def split_input(self, inputs: Sequence[int]) -> tuple[list[int], ...]:
    return F.split_input(self.name, inputs, self.spec)

  # -- sampling ---------------------------------------------------------------------------------
  def tokens(self, rng: np.random.Generator, size) -> np.ndarray:
    return self.alphabet.draw(rng, size)

  @abc.abstractmethod
  def draw_block(self, rng: np.random.Generator,
                 n: int) -> tuple[tuple[ragged.Ragged, ...], ragged.Ragged]:
    """n examples as (arguments, raw outputs); outputs may have empty rows."""

  def sample(self, rng: np.random.Generator) -> Example:
    return self.sample_block(rng, 1)[0]

  def sample_block(self, rng: np.random.Generator, n: int) -> list[Example]:
    inputs, outputs = self.sample_ragged(rng, n)
    return list(zip(inputs.rows(), outputs.rows()))

  def sample_ragged(self, rng: np.random.Generator, n: int) -> tuple[ragged.Ragged, ragged.Ragged]:
    args, out = self.draw_block(rng, n)
    return self.assemble(args, out)

  def assemble(self, args: tuple[ragged.Ragged, ...],
               out: ragged.Ragged) -> tuple[ragged.Ragged, ragged.Ragged]:
    """Adds the prefix and divider to the arguments and the marker to empty outputs."""
    n = out.num_rows
    parts = [self.prefix, args[0]]
    if self.binary:
      parts += [np.asarray([self.arg_divider], dtype=ragged.ID_DTYPE), args[1]]
    inputs = ragged.concat_rows(parts, n)
    empty = out.lengths == 0
    if empty.any():
      marker = ragged.Ragged(np.full(int(empty.sum()), self.empty_marker, dtype=ragged.ID_DTYPE),
                             empty.astype(np.int64))
      out = ragged.concat_rows([out, marker], n)
    return inputs, out

  def encoded_numbers(self, numbers: np.ndarray) -> ragged.Ragged:
    """spec.encode(str(number)) for each number (non-negative ints)."""
    numbers = np.asarray(numbers, dtype=np.int64)
    table = self._numbers.indices(range(int(numbers.max(initial=0)) + 1))  # index of value v
    return self._numbers.lookup(table[numbers])

  def encoded_words(self, words: Sequence[str], choice: np.ndarray) -> ragged.Ragged:
    """spec.encode(words[c]) for each c in choice."""
    return self._words.lookup(self._words.indices(words)[choice])

  def uniform(self, rng: np.random.Generator, low, high, size=None) -> np.ndarray:
    return ragged.uniform_int(rng, low, high, size)
