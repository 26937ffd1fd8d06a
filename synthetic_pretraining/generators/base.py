"""The interface every synthetic task generator implements, and deterministic example addressing.

A task is a `SyntheticTask`: a name (the paper's id), a sampler drawing one example from a numpy
`Generator`, and optionally a vectorised `sample_block` drawing many at once (much faster), whose
flat form `sample_ragged` (values + row lengths, no per-example arrays) feeds streaming. Examples
are addressed by (seed, shard, index): index i lives in block i // BLOCK_SIZE, whose RNG is seeded
from (task name, seed, shard, block). So the same address gives the same example in any process,
a stream can start anywhere (resume), and distinct indices never repeat a draw.
"""

from __future__ import annotations

import abc
import hashlib
from typing import Iterator

import numpy as np

from synthetic_pretraining.generators import ragged
from synthetic_pretraining.vocab_spec import VocabSpec

BLOCK_SIZE = 256
Example = tuple[np.ndarray, np.ndarray]  # (inputs, targets) as int32 id arrays, no EOS.


class SyntheticTask(abc.ABC):
  """One synthetic task bound to a vocabulary and its sampler knobs."""

  name: str = ""

  def __init__(self, spec: VocabSpec):
    self.spec = spec

  @abc.abstractmethod
  def sample(self, rng: np.random.Generator) -> Example:
    """Draws one example."""

  def sample_block(self, rng: np.random.Generator, n: int) -> list[Example]:
    """Draws `n` examples; override with a vectorised version where it pays."""
    return [self.sample(rng) for _ in range(n)]

  def sample_ragged(self, rng: np.random.Generator, n: int) -> tuple[ragged.Ragged, ragged.Ragged]:
    """The same `n` examples as `sample_block` (same RNG use), as flat (inputs, targets) rows.

    This is the form streaming and file writing consume; vectorised tasks override it so that no
    per-example arrays are made. `sample_block` and `sample_ragged` must agree draw for draw.
    """
    examples = self.sample_block(rng, n)
    return (ragged.from_rows([e[0] for e in examples]),
            ragged.from_rows([e[1] for e in examples]))


def _task_key(name: str) -> int:
  return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def block_rng(task_name: str, seed: int, shard: int, block: int) -> np.random.Generator:
  return np.random.default_rng(np.random.SeedSequence([_task_key(task_name), seed, shard, block]))


def generate_block(task: SyntheticTask, seed: int, shard: int, block: int) -> list[Example]:
  return task.sample_block(block_rng(task.name, seed, shard, block), BLOCK_SIZE)


def generate_ragged_block(task: SyntheticTask, seed: int, shard: int,
                          block: int) -> tuple[ragged.Ragged, ragged.Ragged]:
  """Block `block` of (seed, shard) as flat rows: the same examples as `generate_block`."""
  return task.sample_ragged(block_rng(task.name, seed, shard, block), BLOCK_SIZE)


def iter_examples(task: SyntheticTask, seed: int = 0, shard: int = 0, start: int = 0,
                  stop: int | None = None) -> Iterator[Example]:
  """Examples start, start+1, … (< stop) of (seed, shard); deterministic and resumable."""
  index = start
  block, offset = divmod(start, BLOCK_SIZE)
  while stop is None or index < stop:
    examples = generate_block(task, seed, shard, block)
    for example in examples[offset:]:
      if stop is not None and index >= stop:
        return
      yield example
      index += 1
    block, offset = block + 1, 0


def example_at(task: SyntheticTask, seed: int, shard: int, index: int) -> Example:
  block, offset = divmod(index, BLOCK_SIZE)
  return generate_block(task, seed, shard, block)[offset]
