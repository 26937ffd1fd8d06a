"""`synthetic-pretraining vocab`: offline SentencePiece training."""

import pathlib

import pytest
import sentencepiece as spm

from synthetic_pretraining.data import train_vocab

TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "Pack my box with five dozen liquor jugs!",
    "public int GetValue() { return value; }",
    "COC(=O)CCC(=O)c1ccc(OC2CCCCO2)cc1O",
    "(JOIN (R location.country.languages_spoken) m.03_r3)",
] * 8


@pytest.fixture
def corpus(tmp_path) -> list[pathlib.Path]:
  text = tmp_path / "corpus.txt"
  text.write_text("\n".join(TEXT) + "\n\n", encoding="utf-8")
  tsv = tmp_path / "squad" / "train.tsv"
  tsv.parent.mkdir()
  tsv.write_text("question: who ? context: zebra quagga\tzebra\t[\"ANSWERJSONONLY\"]\n",
                 encoding="utf-8")
  return [text, tsv]


def test_trains_t5_style_model(corpus, tmp_path):
  out = train_vocab.train(tmp_path / "vocab" / "tiny.model", corpus, vocab_size=200)
  sp = spm.SentencePieceProcessor(model_file=str(out))
  assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
  assert [sp.id_to_piece(i) for i in range(3)] == ["<pad>", "</s>", "<unk>"]
  assert 50 < sp.get_piece_size() <= 200
  for sentence in TEXT[:5]:
    ids = sp.encode(sentence)
    assert 2 not in ids  # character_coverage=1.0: even '{' and '=' are known
    assert sp.decode(ids) == sentence
  vocab_lines = (tmp_path / "vocab" / "tiny.vocab").read_text(encoding="utf-8").split("\n")
  assert vocab_lines[0] == "<pad>\t0.0" and len(vocab_lines) == sp.get_piece_size() + 1
  assert sorted(p.name for p in (tmp_path / "vocab").iterdir()) == ["tiny.model", "tiny.vocab"]


def test_tsv_contributes_input_and_target_only(corpus):
  sentences = list(train_vocab.iter_sentences(corpus, max_sentence_chars=1000))
  assert "question: who ? context: zebra quagga" in sentences and "zebra" in sentences
  assert not any("ANSWERJSONONLY" in s for s in sentences)
  assert len(sentences) == len(TEXT) + 2


def test_deterministic(corpus, tmp_path):
  a = train_vocab.train(tmp_path / "a.model", corpus, vocab_size=150)
  b = train_vocab.train(tmp_path / "b.model", corpus, vocab_size=150)
  assert a.read_bytes() == b.read_bytes()


def test_large_vocab_size_is_a_soft_limit_and_loads_in_seqio(corpus, tmp_path):
  seqio = pytest.importorskip("seqio")
  out = train_vocab.train(tmp_path / "big.model", corpus)  # default 32000 >> corpus
  pieces = spm.SentencePieceProcessor(model_file=str(out)).get_piece_size()
  assert pieces < 1000
  vocab = seqio.SentencePieceVocabulary(str(out), extra_ids=100)
  assert vocab.vocab_size == pieces + 100
  assert vocab.decode(vocab.encode("the lazy dog")) == "the lazy dog"


def test_cli_with_data_dir_and_errors(corpus, tmp_path, capsys):
  out = tmp_path / "cli.model"
  assert train_vocab.main(["--out", str(out), "--vocab_size", "120", "--input", str(corpus[0]),
                           "--data_dir", str(corpus[1].parent.parent)]) == 0
  assert f"wrote {out}" in capsys.readouterr().out
  assert spm.SentencePieceProcessor(model_file=str(out)).encode("quagga")
  assert train_vocab.main(["--out", str(tmp_path / "x.model"),
                           "--input", str(tmp_path / "missing.txt")]) == 2
  assert "missing.txt does not exist" in capsys.readouterr().err
  assert not (tmp_path / "x.model").exists()
  empty = tmp_path / "empty"
  empty.mkdir()
  assert train_vocab.main(["--out", str(tmp_path / "y.model"), "--data_dir", str(empty)]) == 2
  assert "no prepared downstream splits" in capsys.readouterr().err
