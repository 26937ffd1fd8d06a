"""Natural-text pre-training: T5 span corruption over a local text corpus.

`register_natural_task(vocabulary)` registers `natural_span_corruption`, the "natural pre-training"
baseline on text at hand (the paper's natural baseline is T5's C4 checkpoint; this task lets a
small run pre-train on real text offline). The pipeline is T5's C4 span-corruption task:
documents → tokenise → (repeat) → `t5.data.preprocessors.span_corruption` (random chunk, concatenate
documents, split to the length that yields exactly the input length after corruption, noise
density 0.15, mean span length 3, sentinels `<extra_id_0>`, `<extra_id_1>`, … = the highest ids
downwards) → `append_eos_after_trim`.

Corpus (resolved when a dataset is built): argument `corpus_path`, else gin
`natural_corpus.path`, else env `SP_NATURAL_CORPUS`, else the shared development corpus
`../shared/data/natural_corpus/summaries_en-us.json` beside the repository. Accepted layouts:

* `.json`: a dict or list of articles; an article is a string or an object whose `extract`
  (Wikipedia summaries, e.g. summaries_en-us.json) or `text` field holds the text;
* `.jsonl`: one such article per line;
* `.txt`: one document per non-empty line;
* a folder: every such file below it, in sorted path order.

Splits: a document goes to "validation" when the first 8 bytes of sha256(text), read as an
integer, fall below `validation_fraction` of the range (default 2 %), else to "train" — the same
split for any file order or machine.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pathlib
from typing import Iterable, Mapping, Optional, Sequence

import gin
import seqio
from t5.data import preprocessors as t5_preprocessors
import tensorflow as tf

TASK_NAME = "natural_span_corruption"
CORPUS_ENV = "SP_NATURAL_CORPUS"
DEFAULT_VALIDATION_FRACTION = 0.02
_SHARED_CORPUS = (pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"
                  / "natural_corpus" / "summaries_en-us.json")
_TEXT_FIELDS = ("extract", "text")
_SUFFIXES = (".json", ".jsonl", ".txt")


@gin.configurable(module="synthetic_pretraining")
def natural_corpus(path: Optional[str] = None) -> str:
  """The corpus path: gin `path` (macro NATURAL_CORPUS; the train command sets it from env
  SP_NATURAL_CORPUS), else the shared development corpus."""
  resolved = path
  if resolved:
    return os.path.expanduser(resolved)
  if _SHARED_CORPUS.exists():
    return str(_SHARED_CORPUS)
  raise FileNotFoundError(
      f"no natural-text corpus configured: set gin NATURAL_CORPUS (natural_corpus.path; env "
      f"{CORPUS_ENV} for the train command) to a "
      ".json/.jsonl/.txt file or a folder of them (default {_SHARED_CORPUS} does not exist)")


def _article_text(article, where: str) -> str:
  if isinstance(article, str):
    return article
  if isinstance(article, Mapping):
    for field in _TEXT_FIELDS:
      if isinstance(article.get(field), str):
        return article[field]
  raise ValueError(f"{where}: expected a string or an object with a string field "
                   f"{' or '.join(repr(f) for f in _TEXT_FIELDS)}, got {type(article).__name__}")


def _read_file(path: pathlib.Path) -> Iterable[str]:
  if path.suffix == ".json":
    try:
      data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    items = data.items() if isinstance(data, Mapping) else enumerate(data)
    for key, article in items:
      yield _article_text(article, f"{path}: article {key!r}")
  elif path.suffix == ".jsonl":
    with path.open(encoding="utf-8") as f:
      for line_number, line in enumerate(f, start=1):
        if line.strip():
          try:
            article = json.loads(line)
          except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{line_number}: not valid JSON ({e.msg})") from None
          yield _article_text(article, f"{path}:{line_number}")
  else:
    with path.open(encoding="utf-8") as f:
      yield from (line.strip() for line in f)


def read_documents(corpus_path: str) -> list[str]:
  """All non-empty documents of a corpus file or folder (see the module docstring)."""
  root = pathlib.Path(corpus_path)
  if root.is_dir():
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in _SUFFIXES)
    if not files:
      raise FileNotFoundError(f"{root}: no {'/'.join(_SUFFIXES)} files in this folder")
  elif root.is_file():
    files = [root]
  else:
    raise FileNotFoundError(f"{root}: natural-text corpus not found")
  documents = [text.strip() for path in files for text in _read_file(path)]
  return [text for text in documents if text]


def is_validation(text: str, validation_fraction: float) -> bool:
  """The document's split, from a hash of its text (independent of order and machine)."""
  value = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
  return value < validation_fraction * 2**64


@functools.lru_cache(maxsize=8)
def split_documents(corpus_path: str,
                    validation_fraction: float) -> Mapping[str, tuple[str, ...]]:
  """{"train": documents, "validation": documents} of the corpus (cached per path)."""
  documents = read_documents(corpus_path)
  validation = tuple(d for d in documents if is_validation(d, validation_fraction))
  train = tuple(d for d in documents if not is_validation(d, validation_fraction))
  if not train or not validation:
    raise ValueError(f"{corpus_path}: {len(documents)} documents give an empty split (train "
                     f"{len(train)}, validation {len(validation)}) at validation_fraction "
                     f"{validation_fraction}")
  return {"train": train, "validation": validation}


class NaturalTextSource(seqio.DataSource):
  """Documents of a local corpus as {"targets": text}, split reproducibly by text hash."""

  def __init__(self, corpus_path: Optional[str] = None,
               validation_fraction: float = DEFAULT_VALIDATION_FRACTION):
    if not 0 < validation_fraction < 1:
      raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    super().__init__(splits=("train", "validation"))
    self._corpus_path = corpus_path
    self._validation_fraction = validation_fraction

  @property
  def corpus_path(self) -> str:
    return os.path.expanduser(self._corpus_path) if self._corpus_path else natural_corpus()

  def documents(self, split: str) -> Sequence[str]:
    if split not in self.splits:
      raise ValueError(f"split {split!r} not in {self.splits}")
    return split_documents(self.corpus_path, self._validation_fraction)[split]

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return True

  def list_shards(self, split: str) -> Sequence[str]:
    return [self.corpus_path]

  def num_input_examples(self, split: str) -> int:
    return len(self.documents(split))

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
    """The split's documents (shuffled with `seed` when `shuffle`), sharded by document."""
    del sequence_length, use_cached, num_epochs
    documents = self.documents(split)
    ds = tf.data.Dataset.from_tensor_slices({"targets": tf.constant(list(documents))})
    if shard_info is not None and shard_info.num_shards > 1:
      ds = ds.shard(shard_info.num_shards, shard_info.index)
    if shuffle:
      ds = ds.shuffle(len(documents), seed=seed, reshuffle_each_iteration=True)
    return ds


def register_natural_task(vocabulary: seqio.Vocabulary, name: str = TASK_NAME,
                          corpus_path: Optional[str] = None,
                          validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
                          noise_density: float = 0.15,
                          mean_noise_span_length: float = 3.0) -> seqio.Task:
  """Registers (or replaces) the span-corruption task `name` over a local corpus."""
  output_features = {
      "inputs": seqio.Feature(vocabulary=vocabulary, add_eos=True, required=False),
      "targets": seqio.Feature(vocabulary=vocabulary, add_eos=True),
  }
  seqio.TaskRegistry.remove(name)
  return seqio.TaskRegistry.add(
      name,
      source=NaturalTextSource(corpus_path, validation_fraction),
      output_features=output_features,
      preprocessors=[
          seqio.preprocessors.tokenize,
          functools.partial(t5_preprocessors.span_corruption, noise_density=noise_density,
                            mean_noise_span_length=mean_noise_span_length),
          seqio.preprocessors.append_eos_after_trim,
      ],
      metric_fns=[])
