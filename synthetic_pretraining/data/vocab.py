"""The SeqIO vocabulary of the project's tasks, chosen explicitly, and the generators' view of it.

The vocabulary is an argument (`tasks.register_all(vocabulary)`) or a gin binding, never a hidden
global. `task_vocabulary()` is the gin-configurable choice used where none is passed:

* `name='t5'` (default): T5's SentencePiece model `cc_all.32000` with 100 extra ids — the paper's
  vocabulary — read from `t5_spm_path` (default `gs://t5-data/vocabs/cc_all.32000/sentencepiece
  .model`). Loading is lazy (nothing is read until a task needs the model), so importing the task
  registry offline is fine; if the file cannot be read then, `VocabularyUnavailableError` says
  which file and how to provide one.
* `name='byte'`: `seqio.ByteVocabulary` with 100 extra ids; needs nothing on disk.
* `name='/path/to/local.model'`: a local SentencePiece model (e.g. one trained by
  `synthetic-pretraining vocab`), with 100 extra ids.

In gin (the run files expose it as the macro `VOCABULARY`, and `T5_SPM_PATH`):

    synthetic_pretraining.data.vocab.task_vocabulary.name = 'byte'

`get_vocab_spec(vocabulary)` returns the `VocabSpec` the generators need for that vocabulary.
"""

from __future__ import annotations

import functools
import os

import gin
import seqio

from synthetic_pretraining.vocab_spec import NUM_EXTRA_IDS, T5_SPM_PATH, VocabSpec

MODEL_VOCAB_MULTIPLE = 128
VOCABULARY_NAMES = ("t5", "byte")


class VocabularyUnavailableError(ValueError):
  """A SentencePiece model file could not be read; the message names it and the remedies."""


def _unavailable_message(path: str, error: BaseException) -> str:
  first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
  return (
      f"cannot load the SentencePiece vocabulary {path!r} ({type(error).__name__}: "
      f"{first_line}). Provide it in one of these ways: a local copy of T5's cc_all.32000 "
      "sentencepiece.model (gin `T5_SPM_PATH = '/path/sentencepiece.model'`, i.e. "
      "`task_vocabulary.t5_spm_path`; env SP_T5_SPM_PATH for the command-line tools); the byte "
      "vocabulary, which needs no file (gin `VOCABULARY = 'byte'`; env SP_VOCAB=byte); or a "
      "locally trained model (`synthetic-pretraining vocab --out local.model …`, then gin "
      "`VOCABULARY = '/path/local.model'`).")


class CheckedSentencePieceVocabulary(seqio.SentencePieceVocabulary):
  """seqio's SentencePieceVocabulary whose model-loading failure is one clear error.

  seqio reads the model lazily, on first use, through TensorFlow's file system; offline, a
  `gs://` path ends in a long TensorFlow traceback. This subclass turns any failure to read the
  file into `VocabularyUnavailableError` naming the file and the ways to provide a vocabulary.
  """

  def _model_context(self):
    try:
      return super()._model_context()
    except VocabularyUnavailableError:
      raise
    except Exception as e:  # pylint: disable=broad-except  (TF / SentencePiece / OS errors)
      raise VocabularyUnavailableError(
          _unavailable_message(self.sentencepiece_model_file, e)) from None


class T5Vocabulary(CheckedSentencePieceVocabulary):
  """T5's `cc_all.32000` model (from gs:// or a local copy): the generators name it "t5"."""


def vocabulary_from_name(name: str, t5_spm_path: str | None = None) -> seqio.Vocabulary:
  """Builds the vocabulary named `name`: 't5', 'byte' or a SentencePiece model path.

  Args:
    name: the choice (see the module docstring).
    t5_spm_path: where T5's model is read from for 't5' (None: the public gs:// path).

  Returns:
    A new vocabulary object (nothing is read yet for SentencePiece models).
  """
  name = (name or "").strip()
  if name in ("", "t5"):
    return T5Vocabulary(os.path.expanduser(t5_spm_path or T5_SPM_PATH), extra_ids=NUM_EXTRA_IDS)
  if name == "byte":
    return seqio.ByteVocabulary(extra_ids=NUM_EXTRA_IDS)
  if "://" not in name and not os.path.isfile(os.path.expanduser(name)):
    raise ValueError(
        f"vocabulary {name!r}: expected 't5', 'byte' or the path of a SentencePiece .model file, "
        "but no such file exists")
  return CheckedSentencePieceVocabulary(os.path.expanduser(name), extra_ids=NUM_EXTRA_IDS)


@gin.configurable
def task_vocabulary(name: str = "t5", t5_spm_path: str | None = None) -> seqio.Vocabulary:
  """The vocabulary selected in gin (macro `VOCABULARY` of the run files); cached per setting.

  Args:
    name: 't5' (default), 'byte', or the path of a local SentencePiece `.model`.
    t5_spm_path: local copy of T5's `cc_all.32000` model used for 't5' (None: gs:// path).

  Returns:
    The vocabulary; the same object for the same arguments.
  """
  return _cached_vocabulary(name or "t5", t5_spm_path or "")


@functools.lru_cache(maxsize=None)
def _cached_vocabulary(name: str, t5_spm_path: str) -> seqio.Vocabulary:
  return vocabulary_from_name(name, t5_spm_path or None)


def ensure_available(vocabulary: seqio.Vocabulary) -> None:
  """Loads a SentencePiece vocabulary's model now; `VocabularyUnavailableError` if unreadable.

  Called at Python level before a pipeline is traced, so that the error is this one message and
  not a TensorFlow staging error around it.
  """
  if isinstance(vocabulary, seqio.SentencePieceVocabulary):
    try:
      vocabulary.load_model()
    except VocabularyUnavailableError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      raise VocabularyUnavailableError(
          _unavailable_message(vocabulary.sentencepiece_model_file, e)) from None


def describe(vocabulary: seqio.Vocabulary) -> str:
  """A short human-readable name of `vocabulary` for messages."""
  if isinstance(vocabulary, seqio.ByteVocabulary):
    return f"byte vocabulary ({vocabulary.extra_ids} extra ids)"
  if isinstance(vocabulary, seqio.SentencePieceVocabulary):
    return f"SentencePiece {vocabulary.sentencepiece_model_file} ({vocabulary.extra_ids} extra ids)"
  return type(vocabulary).__name__


def get_vocab_spec(vocabulary: seqio.Vocabulary) -> VocabSpec:
  """The generators' `VocabSpec` for `vocabulary` (reads the SentencePiece model if it is one)."""
  if isinstance(vocabulary, seqio.ByteVocabulary):
    return VocabSpec.byte(vocabulary.extra_ids)
  if isinstance(vocabulary, seqio.SentencePieceVocabulary):
    try:
      is_t5 = (isinstance(vocabulary, T5Vocabulary) or
               vocabulary.sentencepiece_model_file == T5_SPM_PATH)
      return _sentencepiece_spec(vocabulary.sentencepiece_model_file, vocabulary.extra_ids,
                                 is_t5 and vocabulary.extra_ids == NUM_EXTRA_IDS)
    except VocabularyUnavailableError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      raise VocabularyUnavailableError(
          _unavailable_message(vocabulary.sentencepiece_model_file, e)) from None
  raise TypeError(
      f"no VocabSpec for {type(vocabulary).__name__}: expected seqio.ByteVocabulary or "
      "seqio.SentencePieceVocabulary")


@functools.lru_cache(maxsize=None)
def _sentencepiece_spec(model_file: str, extra_ids: int, is_t5: bool) -> VocabSpec:
  return VocabSpec.from_sentencepiece(model_file, extra_ids, name="t5" if is_t5 else None)


def padded_vocab_size(vocab_size: int, multiple: int = MODEL_VOCAB_MULTIPLE) -> int:
  """Model embedding size: `vocab_size` rounded up to a multiple of 128 (T5: 32100 -> 32128)."""
  if vocab_size <= 0 or multiple <= 0:
    raise ValueError(f"vocab_size and multiple must be positive, got {vocab_size}, {multiple}")
  return -(-vocab_size // multiple) * multiple


def model_vocab_size(vocabulary: seqio.Vocabulary | None = None) -> int:
  """Padded embedding size for `vocabulary` (default: the gin-selected `task_vocabulary()`)."""
  vocabulary = vocabulary or task_vocabulary()
  return padded_vocab_size(vocabulary.vocab_size)
