"""The vocabulary choice (gin `task_vocabulary`) and the generators' VocabSpec for each vocabulary."""

import io

import gin
import pytest
import seqio
import sentencepiece as spm

from synthetic_pretraining.data import vocab
from synthetic_pretraining.vocab_spec import T5_SPM_PATH


@pytest.fixture
def tiny_spm(tmp_path):
  """A small SentencePiece model with T5's special ids (pad 0, eos 1, unk 2)."""
  text = ("the quick brown fox jumps over the lazy dog . a set of numbers : one two three four "
          "five six seven eight nine ten . yes no maybe . ") * 30
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(text.split(" . ")), model_writer=model, vocab_size=60,
      model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False,
      num_threads=1)
  path = tmp_path / "tiny.model"
  path.write_bytes(model.getvalue())
  return str(path)


@pytest.fixture
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def _bind(**kwargs):
  for key, value in kwargs.items():
    gin.bind_parameter(f"synthetic_pretraining.data.vocab.task_vocabulary.{key}", value)


def test_byte_vocabulary_and_spec_agree(clean_gin):
  _bind(name="byte")
  vocabulary = vocab.task_vocabulary()
  assert isinstance(vocabulary, seqio.ByteVocabulary)
  assert vocabulary.extra_ids == 100
  spec = vocab.get_vocab_spec(vocabulary)
  assert spec.vocab_size == vocabulary.vocab_size == 359
  assert spec.extra_id(0) == vocabulary.vocab_size - 1
  for text in ("set", "12", "yes"):
    assert spec.encode(text) == list(vocabulary.encode(text))


def test_t5_is_default_and_lazy(clean_gin, monkeypatch):
  monkeypatch.setenv("SP_VOCAB", "byte")  # The environment is not read by the library.
  vocabulary = vocab.task_vocabulary()  # Nothing is read: no network needed.
  assert isinstance(vocabulary, seqio.SentencePieceVocabulary)
  assert vocabulary.sentencepiece_model_file == T5_SPM_PATH
  assert vocabulary.extra_ids == 100
  assert vocab.task_vocabulary() is vocabulary  # Cached per setting.


def test_t5_path_override(clean_gin, tiny_spm):
  _bind(name="t5", t5_spm_path=tiny_spm)
  vocabulary = vocab.task_vocabulary()
  assert vocabulary.sentencepiece_model_file == tiny_spm
  assert vocab.get_vocab_spec(vocabulary).name == "t5"


def test_local_sentencepiece_model(clean_gin, tiny_spm):
  _bind(name=tiny_spm)
  vocabulary = vocab.task_vocabulary()
  assert isinstance(vocabulary, seqio.SentencePieceVocabulary)
  spec = vocab.get_vocab_spec(vocabulary)
  assert spec.name != "t5"
  assert spec.vocab_size == vocabulary.vocab_size
  assert spec.extra_id(0) == vocabulary.vocab_size - 1
  assert (spec.symbol_low, spec.symbol_high) == (2, vocabulary.vocab_size - 101)
  for text in ("the lazy fox", "seven", "no"):
    assert list(spec.encode_fn(text)) == list(vocabulary.encode(text))


def test_missing_model_path_is_a_clear_error(clean_gin, tmp_path):
  missing = str(tmp_path / "nope.model")
  _bind(name=missing)
  with pytest.raises(ValueError, match="nope.model.*no such file"):
    vocab.task_vocabulary()


def test_unreadable_t5_model_is_one_clear_error(clean_gin, tmp_path):
  # A T5 path that cannot be read fails on first use with the file and the remedies named, both
  # through seqio (tokenising) and through the generators' spec.
  bad = tmp_path / "broken" / "sentencepiece.model"
  bad.parent.mkdir()
  bad.write_bytes(b"not a sentencepiece model")
  _bind(name="t5", t5_spm_path=str(bad))
  vocabulary = vocab.task_vocabulary()
  for use in (lambda: vocabulary.encode("abc"), lambda: vocab.get_vocab_spec(vocabulary),
              lambda: vocabulary.vocab_size):
    with pytest.raises(vocab.VocabularyUnavailableError) as error:
      use()
    message = str(error.value)
    assert str(bad) in message
    assert "T5_SPM_PATH" in message and "VOCABULARY = 'byte'" in message
    assert "synthetic-pretraining vocab" in message


def test_spec_of_unsupported_vocabulary():
  with pytest.raises(TypeError, match="PassThroughVocabulary"):
    vocab.get_vocab_spec(seqio.PassThroughVocabulary(10))


@pytest.mark.parametrize("size,padded", [(32100, 32128), (359, 384), (128, 128), (1, 128)])
def test_padded_vocab_size(size, padded):
  assert vocab.padded_vocab_size(size) == padded


def test_model_vocab_size_of_byte_vocabulary():
  assert vocab.model_vocab_size(seqio.ByteVocabulary(100)) == 384
  with pytest.raises(ValueError, match="positive"):
    vocab.padded_vocab_size(0)
