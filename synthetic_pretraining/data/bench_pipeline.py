"""Benchmark: examples/s of the streamed synthetic SeqIO pipeline, stage by stage.

    synthetic-pretraining bench pipeline [--task set] [--vocab byte|t5like|both]
        [--lengths 512,512] [--batch_size 128] [--seconds 10]
    (or python -m synthetic_pretraining.data.bench_pipeline …)

For each vocabulary it prints, side by side:
  generator        `generate_ragged_block` in a Python loop (no TensorFlow)
  source           the tf.data source alone (block → ragged rows → unbatch)
  memory+convert   the same task pipeline + feature converter fed from examples held in
                   memory: what SeqIO and the converter cost without any generation
  stream+convert   the full pipeline: seqio.get_dataset(task, lengths, converter, batch_size)
                   — what a trainer sees
for two pipelines that give the same batches: "seqio" = the Task with seqio's per-example
append_eos_after_trim + seqio's EncDecFeatureConverter, and "ours" = the Task as registered in
tasks/ (the batched append_eos_after_trim of data/preprocessors.py, after which seqio's
per-example trim map is skipped as a no-op) + our vectorised BatchedEncDecFeatureConverter (what
the trainer, train/data_input.py, uses); unpacked and packed (packed: examples/s
counts the packed examples; rows/s the batch rows), with the ratios ours/seqio and stream/memory
(1.0 = generation costs nothing extra). Both pipelines are measured one after the other in the
same run; on a shared machine repeat the run and compare the ratios.

`byte` is seqio.ByteVocabulary (100 extra ids); `t5like` streams ids of T5's size (symbols
2..31999, 32100 ids, task names and numbers encoded as bytes+3) with a pass-through seqio
vocabulary, so the T5 SentencePiece model is not needed.
"""

from __future__ import annotations

import argparse
import functools
import os
import time
from typing import Callable, Sequence

import numpy as np
import seqio
import tensorflow as tf

from synthetic_pretraining.data import feature_converters
from synthetic_pretraining.data import preprocessors as sp_preprocessors
from synthetic_pretraining.data import synthetic_sources
from synthetic_pretraining.generators import base
from synthetic_pretraining.vocab_spec import VocabSpec


def t5_like_spec() -> VocabSpec:
  """T5's id layout (32,000 base ids + 100 extra) with a byte-based encoder for short strings."""
  return VocabSpec(symbol_low=2, symbol_high=31999, base_vocab_size=32000, num_extra_ids=100,
                   encode_fn=lambda s: [b + 3 for b in s.encode("utf-8")], name="t5like")


def vocabularies(name: str) -> tuple[seqio.Vocabulary, VocabSpec]:
  if name == "byte":
    return seqio.ByteVocabulary(extra_ids=100), VocabSpec.byte()
  if name == "t5like":
    return seqio.PassThroughVocabulary(size=32100, eos_id=1), t5_like_spec()
  raise ValueError(f"--vocab: expected byte, t5like or both, got {name!r}")


def _task(name: str, source: seqio.DataSource, vocabulary: seqio.Vocabulary,
          eos_preprocessor) -> seqio.Task:
  features = {k: seqio.Feature(vocabulary=vocabulary, add_eos=True, dtype=tf.int32)
              for k in ("inputs", "targets")}
  seqio.TaskRegistry.remove(name)
  return seqio.Task(name, source=source, output_features=features,
                    preprocessors=[eos_preprocessor], shuffle_buffer_size=None)


class _MemorySource(seqio.DataSource):
  """Fixed examples repeated forever (stands in for a source that costs nothing)."""

  def __init__(self, examples: Sequence[base.Example]):
    super().__init__(splits=("train",), caching_permitted=False,
                     performs_internal_shuffling=True)
    self._rows = {
        "inputs": tf.ragged.constant([e[0].tolist() for e in examples], dtype=tf.int32),
        "targets": tf.ragged.constant([e[1].tolist() for e in examples], dtype=tf.int32),
    }

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return True

  def list_shards(self, split):
    return [split]

  def get_dataset(self, split="train", shuffle=True, seed=None, shard_info=None, **unused):
    ds = tf.data.Dataset.from_tensor_slices(self._rows).repeat()
    return ds.with_options(synthetic_sources.pipeline_options())  # Same options as the stream.


def _rate(next_batch: Callable[[], Sequence[int]], seconds: float,
          warmup: int = 3) -> np.ndarray:
  """Per-second rates of the counts `next_batch` returns, over about `seconds` after warm-up."""
  for _ in range(warmup):
    next_batch()
  totals, start = None, time.perf_counter()
  while time.perf_counter() - start < seconds:
    counts = np.asarray(next_batch(), dtype=np.float64)
    totals = counts if totals is None else totals + counts
  return totals / (time.perf_counter() - start)


# name: (the Task's EOS preprocessor, the feature converter class)
PIPELINES = {
    "seqio": (seqio.preprocessors.append_eos_after_trim, seqio.EncDecFeatureConverter),
    "ours": (sp_preprocessors.append_eos_after_trim,
             feature_converters.BatchedEncDecFeatureConverter),
}


def _converted_rate(task: seqio.Task, lengths, batch_size: int, converter_cls, pack: bool,
                    seconds: float) -> tuple[float, float]:
  """(examples/s, rows/s) through get_dataset + the converter, batched."""
  # As the trainer (train/data_input.py): seqio's trim map only where it is not a no-op.
  ds = seqio.get_dataset(task, lengths, converter_cls(pack=pack),
                         dataset_split="train", shuffle=True, seed=0, batch_size=batch_size,
                         trim_output_features=not sp_preprocessors.output_is_trimmed(task))
  iterator = ds.as_numpy_iterator()

  def next_batch() -> tuple[int, int]:
    batch = next(iterator)
    if pack:  # Examples in a packed row = its highest segment id.
      return int(batch["encoder_segment_ids"].max(axis=1).sum()), batch_size
    return batch_size, batch_size

  examples, rows = _rate(next_batch, seconds)
  del iterator
  return examples, rows


def bench(task_id: str, vocab_name: str, lengths, batch_size: int, seconds: float) -> list[str]:
  """Runs every stage for one vocabulary; returns printable lines."""
  vocabulary, spec = vocabularies(vocab_name)
  factory = functools.partial(synthetic_sources.build_generator, task_id)
  generator = factory(spec)
  block = [0]

  def gen_block() -> int:
    block[0] += 1
    return base.generate_ragged_block(generator, 0, 0, block[0])[1].num_rows

  lines = [f"[{vocab_name}] task={task_id} lengths={lengths['inputs']}/{lengths['targets']} "
           f"batch={batch_size}"]
  (generator_rate,) = _rate(lambda: (gen_block(),), seconds, warmup=1)
  lines.append(f"  generator        {generator_rate:>10,.0f} examples/s")
  source = synthetic_sources.SyntheticStreamSource(factory, lambda: spec)
  source_batches = source.get_dataset("train", seed=0).batch(1024).as_numpy_iterator()
  (source_rate,) = _rate(lambda: (len(next(source_batches)["targets"]),), seconds, warmup=1)
  del source_batches  # Stop its prefetching before the next measurement.
  lines.append(f"  source           {source_rate:>10,.0f} examples/s")
  memory = _MemorySource(base.generate_block(generator, 0, 0, 10**6)
                         + base.generate_block(generator, 0, 0, 10**6 + 1))
  sources = {"memory": memory, "stream": source}
  for pack in (False, True):
    label = "packed" if pack else "unpacked"
    rates = {}
    for where in ("memory", "stream"):
      for name, (eos, converter_cls) in PIPELINES.items():
        task = _task(f"bench_{where}_{name}_{task_id}", sources[where], vocabulary, eos)
        rates[where, name] = _converted_rate(task, lengths, batch_size, converter_cls, pack,
                                             seconds)
    for where in ("memory", "stream"):
      (seqio_rate, _), (ours_rate, ours_rows) = (rates[where, name] for name in PIPELINES)
      line = (f"  {where}+convert   seqio {seqio_rate:>9,.0f}  ours {ours_rate:>9,.0f} "
              f"examples/s  ours/seqio = {ours_rate / seqio_rate:.2f}  ({label}")
      if where == "stream":
        line += (f"; ours {ours_rows:,.0f} rows/s; stream/memory: seqio "
                 f"{seqio_rate / rates['memory', 'seqio'][0]:.2f}, ours "
                 f"{ours_rate / rates['memory', 'ours'][0]:.2f}")
      lines.append(line + ")")
  return lines


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="synthetic-pretraining bench pipeline",
                                   description=__doc__.split("\n")[0])
  parser.add_argument("--task", default="set", help="paper id of a synthetic task")
  parser.add_argument("--vocab", default="both", choices=("byte", "t5like", "both"))
  parser.add_argument("--lengths", default="512,512", help="inputs,targets lengths")
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--seconds", type=float, default=10.0, help="time per measurement")
  args = parser.parse_args(argv)
  try:
    inputs_length, targets_length = (int(v) for v in args.lengths.split(","))
  except ValueError:
    parser.error(f"--lengths: expected INPUTS,TARGETS (two integers), got {args.lengths!r}")
  lengths = {"inputs": inputs_length, "targets": targets_length}
  print(f"tensorflow {tf.__version__}, seqio {seqio.__version__}, {os.cpu_count()} CPUs")
  for vocab_name in (("byte", "t5like") if args.vocab == "both" else (args.vocab,)):
    for line in bench(args.task, vocab_name, lengths, args.batch_size, args.seconds):
      print(line, flush=True)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
