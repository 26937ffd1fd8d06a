"""The SeqIO vocabulary every task of the project shares, and the generators' view of it.

`get_vocabulary()` picks the vocabulary from the environment variable `SP_VOCAB`:

* `t5` (default): T5's SentencePiece model `cc_all.32000` with 100 extra ids — the paper's
  vocabulary. The model is read from `SP_T5_SPM_PATH` when set (a local copy), otherwise from
  `gs://t5-data/vocabs/cc_all.32000/sentencepiece.model`. Loading is lazy (seqio reads the file on
  first use), so importing the task registry offline is fine.
* `byte`: `seqio.ByteVocabulary` with 100 extra ids; needs nothing on disk (tests, laptops).
* a path to a local SentencePiece `.model` file (e.g. one trained by `synthetic-pretraining vocab`),
  with 100 extra ids.

`get_vocab_spec(vocabulary)` returns the `VocabSpec` the generators need for that vocabulary.
"""

from __future__ import annotations

import functools
import os

import seqio

from synthetic_pretraining.vocab_spec import NUM_EXTRA_IDS, T5_SPM_PATH, VocabSpec

VOCAB_ENV = "SP_VOCAB"
T5_SPM_PATH_ENV = "SP_T5_SPM_PATH"
MODEL_VOCAB_MULTIPLE = 128


def vocabulary_from_name(name: str) -> seqio.Vocabulary:
  """Builds the vocabulary named `name` (`t5`, `byte` or a SentencePiece model path)."""
  name = name.strip()
  if name in ("", "t5"):
    path = os.environ.get(T5_SPM_PATH_ENV) or T5_SPM_PATH
    return seqio.SentencePieceVocabulary(path, extra_ids=NUM_EXTRA_IDS)
  if name == "byte":
    return seqio.ByteVocabulary(extra_ids=NUM_EXTRA_IDS)
  if "://" not in name and not os.path.isfile(name):
    raise ValueError(
        f"{VOCAB_ENV}={name!r}: expected 't5', 'byte' or the path of a SentencePiece .model file, "
        "but no such file exists")
  return seqio.SentencePieceVocabulary(name, extra_ids=NUM_EXTRA_IDS)


def get_vocabulary() -> seqio.Vocabulary:
  """The vocabulary selected by `SP_VOCAB` (see the module docstring); cached per setting."""
  return _cached_vocabulary(os.environ.get(VOCAB_ENV, "t5"),
                            os.environ.get(T5_SPM_PATH_ENV, ""))


@functools.lru_cache(maxsize=None)
def _cached_vocabulary(name: str, unused_t5_path: str) -> seqio.Vocabulary:
  # The T5 path is part of the cache key so that changing SP_T5_SPM_PATH takes effect.
  return vocabulary_from_name(name)


def get_vocab_spec(vocabulary: seqio.Vocabulary) -> VocabSpec:
  """The generators' `VocabSpec` for `vocabulary` (reads the SentencePiece model if it is one)."""
  if isinstance(vocabulary, seqio.ByteVocabulary):
    return VocabSpec.byte(vocabulary.extra_ids)
  if isinstance(vocabulary, seqio.SentencePieceVocabulary):
    return _sentencepiece_spec(vocabulary.sentencepiece_model_file, vocabulary.extra_ids)
  raise TypeError(
      f"no VocabSpec for {type(vocabulary).__name__}: expected seqio.ByteVocabulary or "
      "seqio.SentencePieceVocabulary")


@functools.lru_cache(maxsize=None)
def _sentencepiece_spec(model_file: str, extra_ids: int) -> VocabSpec:
  is_t5 = model_file in (T5_SPM_PATH, os.environ.get(T5_SPM_PATH_ENV))
  name = "t5" if is_t5 and extra_ids == NUM_EXTRA_IDS else None
  return VocabSpec.from_sentencepiece(model_file, extra_ids, name=name)


def padded_vocab_size(vocab_size: int, multiple: int = MODEL_VOCAB_MULTIPLE) -> int:
  """Model embedding size: `vocab_size` rounded up to a multiple of 128 (T5: 32100 -> 32128)."""
  if vocab_size <= 0 or multiple <= 0:
    raise ValueError(f"vocab_size and multiple must be positive, got {vocab_size}, {multiple}")
  return -(-vocab_size // multiple) * multiple


def model_vocab_size(vocabulary: seqio.Vocabulary | None = None) -> int:
  """Padded embedding size for `vocabulary` (default: `get_vocabulary()`)."""
  vocabulary = vocabulary or get_vocabulary()
  return padded_vocab_size(vocabulary.vocab_size)
