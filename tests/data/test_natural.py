"""Natural-text span corruption: corpus reading, reproducible split, sentinel round trip."""

import json
import pathlib

import numpy as np
import pytest
import seqio

from synthetic_pretraining.data import natural
from tests.conftest import shared_data_path

VOCAB = seqio.ByteVocabulary(extra_ids=100)
FIRST_SENTINEL = VOCAB.vocab_size - 100


def reconstruct(inputs, targets):
  """Undoes span corruption: each sentinel in the inputs takes the span after it in the targets."""
  assert inputs[-1] == 1 and targets[-1] == 1, "EOS ends inputs and targets"
  inputs, targets = list(inputs[:-1]), list(targets[:-1])
  assert targets and targets[0] >= FIRST_SENTINEL
  spans, current = {}, None
  for token in targets:
    if token >= FIRST_SENTINEL:
      current = token
      spans[current] = []
    else:
      spans[current].append(token)
  out = []
  for token in inputs:
    out.extend(spans[token] if token >= FIRST_SENTINEL else [token])
  return out


def _documents(n=30):
  rng = np.random.default_rng(0)
  words = ["alpha", "beta", "gamma", "delta", "river", "stone", "light", "north", "music"]
  return [" ".join(rng.choice(words, size=int(rng.integers(8, 40)))) + f" doc{i}."
          for i in range(n)]


def _corpus(tmp_path, documents):
  path = tmp_path / "corpus.json"
  path.write_text(json.dumps({f"t{i}": {"title": f"t{i}", "extract": d}
                              for i, d in enumerate(documents)}))
  return path


def test_read_documents_layouts(tmp_path):
  docs = _documents(6)
  folder = tmp_path / "folder"
  (folder / "sub").mkdir(parents=True)
  (folder / "a.json").write_text(json.dumps([docs[0], {"text": docs[1]}]))
  (folder / "sub" / "b.jsonl").write_text(
      json.dumps({"extract": docs[2]}) + "\n\n" + json.dumps(docs[3]) + "\n")
  (folder / "c.txt").write_text(f"{docs[4]}\n\n{docs[5]}\n")
  (folder / "ignored.csv").write_text("x,y\n")
  # Files in sorted path order: a.json, c.txt, sub/b.jsonl.
  assert natural.read_documents(str(folder)) == docs[:2] + docs[4:] + docs[2:4]
  assert natural.read_documents(str(folder / "c.txt")) == docs[4:]


def test_read_documents_errors(tmp_path):
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"text": "fine"}\n{"text": \n')
  with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
    natural.read_documents(str(bad))
  wrong = tmp_path / "wrong.json"
  wrong.write_text(json.dumps({"a": {"title": "no text"}}))
  with pytest.raises(ValueError, match=r"wrong.json: article 'a'.*'extract' or 'text'"):
    natural.read_documents(str(wrong))
  with pytest.raises(FileNotFoundError, match="not found"):
    natural.read_documents(str(tmp_path / "missing.json"))


def test_no_corpus_configured(monkeypatch, tmp_path):
  monkeypatch.delenv(natural.CORPUS_ENV, raising=False)
  monkeypatch.setattr(natural, "_SHARED_CORPUS", tmp_path / "absent.json")
  with pytest.raises(FileNotFoundError, match=natural.CORPUS_ENV):
    natural.natural_corpus()


def test_split_is_reproducible_and_order_independent(tmp_path):
  docs = _documents()
  splits = natural.split_documents(str(_corpus(tmp_path, docs)), 0.3)
  assert sorted(splits["train"] + splits["validation"]) == sorted(docs)
  assert not set(splits["train"]) & set(splits["validation"])
  (tmp_path / "reversed").mkdir()
  reversed_corpus = _corpus(tmp_path / "reversed", docs[::-1])
  again = natural.split_documents(str(reversed_corpus), 0.3)
  assert set(again["validation"]) == set(splits["validation"])
  assert all(natural.is_validation(d, 0.3) for d in splits["validation"])


def test_span_corruption_round_trip(tmp_path):
  docs = _documents()
  corpus = _corpus(tmp_path, docs)
  task = natural.register_natural_task(VOCAB, name="natural_test", corpus_path=str(corpus),
                                       validation_fraction=0.3)
  lengths = {"inputs": 64, "targets": 32}
  for split in ("train", "validation"):
    ds = task.get_dataset(lengths, split, shuffle=False, seed=0, num_epochs=1)
    examples = list(ds.as_numpy_iterator())
    assert len(examples) > 2
    merged = []
    for ex in examples:
      assert (ex["inputs"] >= FIRST_SENTINEL).any(), "inputs hold sentinels"
      assert len(ex["inputs"]) <= lengths["inputs"] and len(ex["targets"]) <= lengths["targets"]
      merged += reconstruct(ex["inputs"].tolist(), ex["targets"].tolist())
    expected = [t for d in natural.split_documents(str(corpus), 0.3)[split]
                for t in VOCAB.encode(d)]
    assert merged == expected
  seqio.TaskRegistry.remove("natural_test")


def test_shared_corpus(tmp_path):
  path = shared_data_path("natural_corpus", "summaries_en-us.json")
  articles = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
  extracts = [a["extract"].strip() for a in articles.values() if a["extract"].strip()]
  splits = natural.split_documents(str(path), natural.DEFAULT_VALIDATION_FRACTION)
  assert len(splits["train"]) + len(splits["validation"]) == len(extracts)
  assert 0.01 < len(splits["validation"]) / len(extracts) < 0.03
  task = natural.register_natural_task(VOCAB, name="natural_shared_test", corpus_path=str(path))
  lengths = {"inputs": 512, "targets": 128}
  ds = task.get_dataset(lengths, "validation", shuffle=False, seed=0, num_epochs=1)
  merged = []
  for ex in ds.take(3).as_numpy_iterator():
    assert len(ex["inputs"]) == lengths["inputs"]  # Chunks are cut to fill the inputs exactly.
    merged += reconstruct(ex["inputs"].tolist(), ex["targets"].tolist())
  stream = [t for d in splits["validation"][:20] for t in VOCAB.encode(d)]
  assert merged == stream[:len(merged)]
  seqio.TaskRegistry.remove("natural_shared_test")
