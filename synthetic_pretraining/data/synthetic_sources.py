"""SeqIO sources of the synthetic tasks: generated on the fly, or read from the release's files.

Streaming (`SyntheticStreamSource`): examples come from `generators.base`, addressed by
(seed, shard, index), so no files are needed and the same address always gives the same example.

* split "train": the infinite stream (seed, shard, 0), (seed, shard, 1), … . `seed` is the seed
  seqio passes to `get_dataset` (or `stream_settings.default_seed` when it passes None); `shard` is
  the seqio `ShardInfo.index` (0 without sharding). Data never repeats within a run.
* split "validation": a fixed, finite set (default 10,000 examples, like the release's valid files)
  drawn from the reserved seed `VALIDATION_SEED`, independent of the training seed, so every run of
  a task is validated on the same examples. Its 256-example blocks are dealt round-robin to the
  seqio shards, so shards partition the set.
* resume: `start_index` (argument of `get_dataset`, `train_streams_start_at(index)` around the
  dataset's construction, or gin `stream_settings.start_index`) starts the
  train stream of every shard at that example index, by block arithmetic (nothing generated and
  discarded but the part of one block). With one task and no packing a resumed run starts at
  `step * per_shard_batch_size` and sees exactly the examples it would have seen. The source owns
  this policy: `SyntheticStreamSource.resume_policy(task, split, pack)` says 'jump' or 'skip' and
  `starting_at(index)` jumps; the trainer only asks (`train.data_input.resumes_by_index`). Packing, mixtures and span corruption
  consume a data-dependent number of examples per step: there the trainer skips the batches it
  has seen (exact, but it regenerates them), or checkpoint the tf.data iterator (block generation
  is a stateless function of the block index).

Generators come from `generators.registry.get_task(paper id, spec, **knobs)`, the knobs from gin
`generator_knobs.knobs` (e.g. {"set": {"length_range": (10, 50)}} for small CPU runs). Targets-only
sources (nesting_language) emit just `targets`; the task's preprocessors build the inputs.

Speed: Python is entered once per 256-example block (a stateless `tf.numpy_function` mapped over
block indices, in parallel), which returns flat id arrays + row lengths; TF turns them into ragged
rows and unbatches — no per-example Python→TF crossing. `pipeline_options()` (map fusion,
single-threaded ops, a private thread pool) is set on the source and merged by tf.data into the
whole SeqIO pipeline. The registered tasks append EOS on batches (`data/preprocessors.py`) and the
trainer converts features on batches (`feature_converters.BatchedEncDecFeatureConverter`), so no
tf.data function runs per example.
`python -m synthetic_pretraining.data.bench_pipeline` prints the figures. An exit guard stops
block generation when the interpreter exits (the stream ends), so a process left holding a live
iterator still ends.

Files (`SyntheticFileSource`): `<data_dir>/<paper id>/{train,valid}.txt` as written by
`synthetic-pretraining generate`, one `[ids]\\t[ids]` line per example (targets-only tasks: the
release's single `[ids]` list, or `[]\\t[ids]`), parsed like the release's `lime_processors`
(strip the brackets, split on commas, int32; whitespace around ids is tolerated). A malformed line
stops the pipeline with `<file>:<line>: malformed line, expected …`. The data directory is resolved
when the dataset is built: argument, gin `synthetic_data_dir.path` (the run files' macro
`SYNTHETIC_DATA_DIR`), else `~/synthetic_pretraining_data/pretraining`. Lines are read in file order; the Task's shuffle
buffer mixes them.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import dataclasses
import os
import sys
import threading
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import gin
import numpy as np
import seqio
import tensorflow as tf

from synthetic_pretraining.generators import base
from synthetic_pretraining.generators import ragged
from synthetic_pretraining.generators import registry
from synthetic_pretraining.vocab_spec import VocabSpec

DEFAULT_NUM_VALID_EXAMPLES = 10_000
# SeedSequence entries must be non-negative; training seeds must differ from this one.
VALIDATION_SEED = 2**32 - 1
DEFAULT_DATA_DIR = "~/synthetic_pretraining_data/pretraining"
FILE_NAMES = {"train": "train.txt", "validation": "valid.txt"}

TaskFactory = Callable[[VocabSpec], base.SyntheticTask]


@dataclasses.dataclass(frozen=True)
class StreamSettings:
  start_index: int = 0
  default_seed: int = 0


@gin.configurable(module="synthetic_pretraining")
def stream_settings(start_index: int = 0, default_seed: int = 0) -> StreamSettings:
  """Gin knobs of every streamed synthetic source (read each time a dataset is built).

  Args:
    start_index: first train example of each shard's stream (resume; see the module docstring).
    default_seed: stream seed used when seqio passes `seed=None`.

  Returns:
    The settings.
  """
  if start_index < 0:
    raise ValueError(f"stream_settings.start_index must be >= 0, got {start_index}")
  return StreamSettings(start_index=start_index, default_seed=default_seed)


_START_OVERRIDE: contextvars.ContextVar[Optional[int]] = contextvars.ContextVar(
    "synthetic_stream_start", default=None)


@contextlib.contextmanager
def train_streams_start_at(index: int):
  """Within the block, train streams built (get_dataset) start at example `index` of their shard.

  Takes precedence over gin `stream_settings.start_index`; an explicit `start_index` argument
  still wins. Used by the trainer to resume a streamed task without regenerating what it skips.
  """
  if index < 0:
    raise ValueError(f"start index must be >= 0, got {index}")
  token = _START_OVERRIDE.set(int(index))
  try:
    yield
  finally:
    _START_OVERRIDE.reset(token)


@gin.configurable(module="synthetic_pretraining")
def synthetic_data_dir(path: Optional[str] = None) -> str:
  """Folder of `<paper id>/{train,valid}.txt`: gin `path` (macro SYNTHETIC_DATA_DIR), else default."""
  return os.path.expanduser(path or DEFAULT_DATA_DIR)


@gin.configurable(module="synthetic_pretraining")
def generator_knobs(knobs: Optional[Mapping[str, Mapping[str, Any]]] = None
                    ) -> Mapping[str, Mapping[str, Any]]:
  """Gin: sampler knobs per paper id, e.g. {"set": {"length_range": (10, 50)}} (streams only)."""
  return dict(knobs or {})


def build_generator(task_id: str, spec: VocabSpec) -> base.SyntheticTask:
  """The generator of `task_id` for `spec`, with the knobs bound in gin `generator_knobs`."""
  return registry.get_task(task_id, spec, **generator_knobs().get(task_id, {}))


class _ExitGuard:
  """Stops Python block generation before the interpreter finalizes.

  tf.data prefetches in C++ threads that call back into Python; a call that starts while Python
  is finalizing blocks forever on the GIL and hangs the process at exit (seen when a script ends
  with a live iterator). At exit, calls return at once with an "ended" flag, on which the source
  dataset ends (take_while), so no stage asks for another block, not even while the iterator is
  torn down with the GIL held; we wait until no call is in flight, so the prefetch buffers fill
  and the threads go idle before finalization. (Raising instead of ending is not enough: an error
  element does not end a tf.data pipeline, and the stages keep pulling blocks.)
  """

  def __init__(self):
    self._lock = threading.Lock()
    self._exiting = False
    self._in_flight = 0
    self._last_exit = 0.0
    atexit.register(self.quiesce)

  def enter(self) -> bool:
    """True: go ahead (then call `leave`); False: the interpreter is exiting, end the stream."""
    with self._lock:
      if self._exiting:
        return False
      self._in_flight += 1
      return True

  def leave(self) -> None:
    with self._lock:
      self._in_flight -= 1
      self._last_exit = time.monotonic()

  def quiesce(self, timeout_s: float = 3.0, idle_s: float = 0.1) -> None:
    with self._lock:
      self._exiting = True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
      with self._lock:
        idle = self._in_flight == 0 and time.monotonic() - self._last_exit > idle_s
      if idle:
        return
      time.sleep(0.01)


_EXIT_GUARD = _ExitGuard()


def pipeline_options() -> tf.data.Options:
  """tf.data options set on our sources; tf.data merges them into the whole downstream pipeline.

  SeqIO and its feature converters run several cheap per-example maps; on CPU their cost is
  mostly the per-call thread hand-offs, not the ops. Fusing the maps into one function, running
  each op single-threaded, and running the pipeline on its own thread pool (at least 4 threads;
  the shared inter-op pool has one per core) each raised examples/s in `bench_pipeline`
  (semantics and determinism are unchanged).
  """
  options = tf.data.Options()
  options.experimental_optimization.map_fusion = True
  options.threading.max_intra_op_parallelism = 1
  options.threading.private_threadpool_size = max(4, os.cpu_count() or 1)
  return options


def _shard(shard_info: Optional[seqio.ShardInfo]) -> tuple[int, int]:
  if shard_info is None:
    return 0, 1
  return shard_info.index, shard_info.num_shards


class _OwnsTrimming:
  """The synthetic sources say whether their task's output is already cut to length.

  Their registered tasks end in the batched `append_eos_after_trim` (tasks/synthetic.py), which
  trims every feature; seqio's own per-example trim map would then be a no-op, so the input path
  may skip it (`train.data_input` asks `output_is_trimmed`).
  """

  def output_is_trimmed(self, task: seqio.Task) -> bool:
    from synthetic_pretraining.data import preprocessors  # pylint: disable=g-import-not-at-top
    return preprocessors.output_is_trimmed(task)


class SyntheticStreamSource(_OwnsTrimming, seqio.DataSource):
  """A synthetic task generated on the fly, deterministic in (seed, shard, index)."""

  def __init__(self, task_factory: TaskFactory, vocab_spec_fn: Callable[[], VocabSpec],
               num_valid_examples: int = DEFAULT_NUM_VALID_EXAMPLES, targets_only: bool = False):
    """Creates the source; nothing is generated (nor any vocabulary read) until a dataset is built.

    Args:
      task_factory: builds the generator for a `VocabSpec` (e.g. `partial(registry.get_task, id)`).
      vocab_spec_fn: returns the `VocabSpec` of the task's vocabulary (called lazily, once).
      num_valid_examples: size of the fixed validation split.
      targets_only: emit only `targets` (the generator's inputs must be empty), for tasks whose
        preprocessors build the inputs (span corruption).
    """
    super().__init__(splits=("train", "validation"),
                     num_input_examples={"validation": num_valid_examples},
                     caching_permitted=False, performs_internal_shuffling=True)
    self._task_factory = task_factory
    self._vocab_spec_fn = vocab_spec_fn
    self._num_valid_examples = num_valid_examples
    self._targets_only = targets_only

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return True  # Every shard index is its own generator stream.

  # ---- resume policy (asked by train.data_input; see the module docstring) --------------------
  def resume_policy(self, task: seqio.Task, split: str, pack: bool) -> str:
    """'jump' if a resumed `split` of `task` may start at step × batch, else 'skip'.

    Jumping is exact when every batch row is the next example of this shard's stream: the train
    split, no packing, no shuffle buffer, and only the 1:1 batched `append_eos_after_trim` after
    the source. Packing, span corruption (data-dependent examples per row) and shuffling must
    skip the batches already seen (exact, but regenerated).
    """
    from synthetic_pretraining.data import preprocessors  # pylint: disable=g-import-not-at-top
    one_to_one = (len(task.preprocessors) == 1 and
                  preprocessors.output_is_trimmed(task))
    return ("jump" if split == "train" and not pack and task.shuffle_buffer_size is None
            and one_to_one else "skip")

  def starting_at(self, example_index: int):
    """Context manager: train streams built inside start at `example_index` of their shard."""
    return train_streams_start_at(example_index)

  def list_shards(self, split: str) -> Sequence[str]:
    return [split]

  def num_input_examples(self, split: str) -> Optional[int]:
    return self._num_valid_examples if split == "validation" else None

  def build_task(self) -> base.SyntheticTask:
    """A fresh generator (knobs are read from gin each time a dataset is built)."""
    return self._task_factory(self._vocab_spec_fn())

  @property
  def feature_keys(self) -> tuple[str, ...]:
    return ("targets",) if self._targets_only else ("inputs", "targets")

  def get_dataset(
      self,
      split: str = "train",
      shuffle: bool = True,
      seed: Optional[int] = None,
      shard_info: Optional[seqio.ShardInfo] = None,
      *,
      sequence_length: Optional[Mapping[str, int]] = None,
      use_cached: bool = False,
      num_epochs: Optional[int] = 1,
      start_index: Optional[int] = None,
  ) -> tf.data.Dataset:
    """Examples as {"inputs", "targets"} int32 vectors without EOS (train: infinite).

    Args:
      split: "train" or "validation".
      shuffle: unused (examples are i.i.d. draws already).
      seed: stream seed of the train split (None: `stream_settings.default_seed`).
      shard_info: seqio shard; its index selects the generator shard.
      sequence_length: unused.
      use_cached: unused.
      num_epochs: unused (train is infinite, validation is a fixed set).
      start_index: first train example (None: `stream_settings.start_index`).

    Returns:
      A tf.data.Dataset.
    """
    del shuffle, sequence_length, use_cached, num_epochs
    settings = stream_settings()
    shard, num_shards = _shard(shard_info)
    if split == "train":
      seed = settings.default_seed if seed is None else int(seed)
      if not 0 <= seed < VALIDATION_SEED:
        raise ValueError(f"stream seed must be in [0, {VALIDATION_SEED}), got {seed}")
      if start_index is None:
        start_index = _START_OVERRIDE.get()
      start = settings.start_index if start_index is None else int(start_index)
      if start < 0:
        raise ValueError(f"start_index must be >= 0, got {start}")
      first_block, offset = divmod(start, base.BLOCK_SIZE)
      blocks = tf.data.Dataset.range(first_block, sys.maxsize)
      return self._examples(blocks, seed, shard, limit=-1).skip(offset)
    if split == "validation":
      num_blocks = -(-self._num_valid_examples // base.BLOCK_SIZE)
      blocks = tf.data.Dataset.range(shard, num_blocks, num_shards)
      return self._examples(blocks, VALIDATION_SEED, 0, limit=self._num_valid_examples)
    raise ValueError(f"split {split!r} not in {self.splits}")

  def _examples(self, blocks: tf.data.Dataset, seed: int, shard: int,
                limit: int) -> tf.data.Dataset:
    """Maps block indices to their examples (`limit` >= 0: drop indices >= limit)."""
    task = self.build_task()
    targets_only = self._targets_only

    ended = (np.zeros([0], np.int32), np.zeros([0], np.int64), np.zeros([0], np.int32),
             np.zeros([0], np.int64), np.bool_(False))

    def block_arrays(block: np.int64):
      if not _EXIT_GUARD.enter():
        return ended
      try:
        block = int(block)
        inputs, targets = base.generate_ragged_block(task, seed, shard, block)
        if limit >= 0:
          keep = max(0, limit - block * base.BLOCK_SIZE)
          inputs, targets = ragged.head_rows(inputs, keep), ragged.head_rows(targets, keep)
        if targets_only and inputs.lengths.any():
          raise ValueError(f"task {task.name}: a targets-only task's generator must yield empty "
                           "inputs")
        return (inputs.values.astype(np.int32, copy=False),
                inputs.lengths.astype(np.int64, copy=False),
                targets.values.astype(np.int32, copy=False),
                targets.lengths.astype(np.int64, copy=False), np.bool_(True))
      finally:
        _EXIT_GUARD.leave()

    def generate(block):
      arrays = tf.numpy_function(block_arrays, [block],
                                 (tf.int32, tf.int64, tf.int32, tf.int64, tf.bool),
                                 stateful=False)
      for array in arrays[:4]:
        array.set_shape([None])
      arrays[4].set_shape([])
      return arrays

    def to_rows(inputs, input_lengths, targets, target_lengths, unused_alive):
      rows = {"targets": tf.RaggedTensor.from_row_lengths(targets, target_lengths)}
      if not targets_only:
        rows["inputs"] = tf.RaggedTensor.from_row_lengths(inputs, input_lengths)
      return rows

    ds = blocks.map(generate, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.take_while(lambda *arrays: arrays[4]).map(to_rows)
    return ds.unbatch().with_options(pipeline_options())


# ------------------------------------------------------------------------------------------------
_IDS = r"\[\s*(?:\d+(?:\s*,\s*\d+)*)?\s*\]"
_PAIR_PATTERN = rf"\s*{_IDS}\t{_IDS}\s*"
# Targets-only files: the release's `[ids]` lines, or `[]<TAB>[ids]` as `generate` writes them.
_SINGLE_PATTERN = rf"\s*(?:\[\s*\]\t)?{_IDS}\s*"


def _parse_ids(text: tf.Tensor) -> tf.Tensor:
  """'[1, 2, 3]' -> int32 [1, 2, 3] ('[]' -> empty)."""
  digits = tf.strings.regex_replace(text, r"[\[\]\s]", "")
  pieces = tf.strings.split(digits, ",")
  pieces = tf.boolean_mask(pieces, tf.strings.length(pieces) > 0)
  return tf.strings.to_number(pieces, out_type=tf.int32)


def parse_release_lines(lines: tf.data.Dataset, filename: str,
                        targets_only: bool = False) -> tf.data.Dataset:
  """Parses a file's lines (in order) into {"inputs", "targets"}; raises at `file:line` when bad."""
  pattern = _SINGLE_PATTERN if targets_only else _PAIR_PATTERN
  expected = "'[id, id, ...]'" if targets_only else "'[id, id, ...]<TAB>[id, id, ...]'"

  def parse(line_number: tf.Tensor, line: tf.Tensor):
    # Invalid UTF-8 in the quoted line would make the error message itself undecodable (and so
    # lose the file:line): bad bytes are shown as U+FFFD.
    shown = tf.strings.unicode_transcode(tf.strings.substr(line, 0, 200), "UTF-8", "UTF-8",
                                         errors="replace")
    message = tf.strings.join([
        filename, ":", tf.strings.as_string(line_number + 1), ": malformed line, expected ",
        expected, ", got: ", shown])
    check = tf.debugging.Assert(tf.strings.regex_full_match(line, pattern), [message],
                                summarize=1)
    with tf.control_dependencies([check]):
      line = tf.identity(line)
    parts = tf.strings.split(line, "\t")
    if targets_only:
      return {"targets": _parse_ids(parts[-1])}
    return {"inputs": _parse_ids(parts[0]), "targets": _parse_ids(parts[1])}

  return lines.enumerate().map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


class SyntheticFileSource(_OwnsTrimming, seqio.DataSource):
  """The release's `[ids]\\t[ids]` files of one task: `<data_dir>/<task_id>/{train,valid}.txt`."""

  def __init__(self, task_id: str, data_dir: Optional[str] = None, targets_only: bool = False):
    """Creates the source.

    Args:
      task_id: the task's folder name (its paper id).
      data_dir: folder holding the task folders (None: resolved when reading, see module doc).
      targets_only: lines hold one id list (the targets), e.g. nesting_language.
    """
    super().__init__(splits=tuple(FILE_NAMES), num_input_examples=None)
    self._task_id = task_id
    self._data_dir = data_dir
    self._targets_only = targets_only

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return False  # One file per split: seqio shards by example.

  def path(self, split: str) -> str:
    if split not in FILE_NAMES:
      raise ValueError(f"split {split!r} not in {tuple(FILE_NAMES)}")
    data_dir = self._data_dir or synthetic_data_dir()
    return os.path.join(data_dir, self._task_id, FILE_NAMES[split])

  def list_shards(self, split: str) -> Sequence[str]:
    return [self.path(split)]

  def get_dataset(
      self,
      split: str = "train",
      shuffle: bool = True,
      seed: Optional[int] = None,
      shard_info: Optional[seqio.ShardInfo] = None,
      *,
      sequence_length: Optional[Mapping[str, int]] = None,
      use_cached: bool = False,
      num_epochs: Optional[int] = 1,
  ) -> tf.data.Dataset:
    """The file's examples in file order (seqio's Task shuffles them with its buffer)."""
    del shuffle, seed, sequence_length, use_cached, num_epochs
    path = self.path(split)
    if not tf.io.gfile.exists(path):
      raise FileNotFoundError(
          f"{path}: no such file. Write it with `synthetic-pretraining generate` (the data folder "
          f"is gin synthetic_data_dir.path — macro SYNTHETIC_DATA_DIR —, else {DEFAULT_DATA_DIR})")
    ds = parse_release_lines(tf.data.TextLineDataset(path), path, self._targets_only)
    ds = ds.with_options(pipeline_options())
    if shard_info is not None and shard_info.num_shards > 1:
      ds = ds.shard(shard_info.num_shards, shard_info.index)
    return ds
