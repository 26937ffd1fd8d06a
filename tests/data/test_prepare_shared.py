"""`prepare` on the real official files in ../shared/data: counts, content, T5 parity, re-runs."""

import gzip
import json
import pathlib

import pytest

from synthetic_pretraining.data import downstream
from synthetic_pretraining.data import prepare
from tests.conftest import shared_data_path


def read_tsv(path: pathlib.Path) -> list[list[str]]:
  text = path.read_text(encoding="utf-8")
  assert text.endswith("\n")
  return [line.split("\t") for line in text[:-1].split("\n")]


def raw_lines(path: pathlib.Path) -> list[str]:
  return path.read_text(encoding="utf-8").rstrip("\n").split("\n")


def run_prepare(task, out, **options):
  return prepare.prepare_task(task, data_dir=out, from_dir=shared_data_path(),
                              options=downstream.PrepareOptions(**options), log=lambda _: None)


@pytest.fixture(scope="module")
def squad_dir(tmp_path_factory):
  shared_data_path("squad")
  out = tmp_path_factory.mktemp("prepared")
  info = run_prepare("squad", out)
  return out / "squad", info


# --- code_translation -------------------------------------------------------------------------
def test_code_translation_counts_and_lines_equal_raw_files(tmp_path):
  raw = shared_data_path("code_translation")
  info = run_prepare("code_translation", tmp_path)
  assert info["splits"] == {"train": 10295, "validation": 499, "test": 1000}
  for split, name in (("train", "train"), ("validation", "valid"), ("test", "test")):
    rows = read_tsv(tmp_path / "code_translation" / f"{split}.tsv")
    java = raw_lines(raw / f"{name}.java-cs.txt.java")
    cs = raw_lines(raw / f"{name}.java-cs.txt.cs")
    assert rows == [[j, c] for j, c in zip(java, cs)]
  assert info["malformed_records_skipped"] == 0


def test_rerun_gives_identical_files(tmp_path):
  shared_data_path("code_translation")
  run_prepare("code_translation", tmp_path)
  first = {p.name: p.read_bytes() for p in (tmp_path / "code_translation").iterdir()}
  run_prepare("code_translation", tmp_path)
  second = {p.name: p.read_bytes() for p in (tmp_path / "code_translation").iterdir()}
  assert first == second
  assert sorted(first) == ["prepare_info.json", "test.tsv", "train.tsv", "validation.tsv"]


# --- retrosynthesis ---------------------------------------------------------------------------
def test_retrosynthesis_default_is_plain_smiles_without_class(tmp_path):
  raw = shared_data_path("retrosynthesis")
  info = run_prepare("retrosynthesis", tmp_path)
  assert info["splits"] == {"train": 40029, "validation": 5004, "test": 5004}
  for split, name in (("train", "train"), ("validation", "valid"), ("test", "test")):
    rows = read_tsv(tmp_path / "retrosynthesis" / f"{split}.tsv")
    sources, targets = raw_lines(raw / f"{name}_sources"), raw_lines(raw / f"{name}_targets")
    assert rows == [["".join(s.split()[1:]), "".join(t.split())]
                    for s, t in zip(sources, targets)]
  first = read_tsv(tmp_path / "retrosynthesis" / "test.tsv")[0]
  assert first == ["COC(=O)CCC(=O)c1ccc(OC2CCCCO2)cc1O", "C1=COCCC1.COC(=O)CCC(=O)c1ccc(O)cc1O"]


def test_retrosynthesis_options_keep_class_and_spaces(tmp_path):
  raw = shared_data_path("retrosynthesis")
  run_prepare("retrosynthesis", tmp_path, retro_keep_class=True, retro_keep_spaces=True)
  rows = read_tsv(tmp_path / "retrosynthesis" / "validation.tsv")
  assert rows == [[s, t] for s, t in zip(raw_lines(raw / "valid_sources"),
                                         raw_lines(raw / "valid_targets"))]
  run_prepare("retrosynthesis", tmp_path, retro_keep_class=True)
  assert read_tsv(tmp_path / "retrosynthesis" / "test.tsv")[0][0] == (
      "<RX_1> COC(=O)CCC(=O)c1ccc(OC2CCCCO2)cc1O")


# --- webqsp -------------------------------------------------------------------------------------
def test_webqsp_drops_null_train_and_keeps_full_test(tmp_path):
  raw = shared_data_path("webqsp")
  info = run_prepare("webqsp", tmp_path)
  train = read_tsv(tmp_path / "webqsp" / "train.tsv")
  valid = read_tsv(tmp_path / "webqsp" / "validation.tsv")
  test = read_tsv(tmp_path / "webqsp" / "test.tsv")
  assert len(train) + len(valid) == 3098 - 107
  assert len(valid) == 309
  assert len(test) == 1639
  assert info["notes"]["train_null_sexpr_dropped"] == 107
  assert sum(t == "null" for _, t in test) == 42
  assert all(t != "null" for _, t in train + valid)
  raw_train = json.loads((raw / "WebQSP_train.json").read_text(encoding="utf-8"))
  expected = {(f"{r['question']} ; structured knowledge: "
               + " ".join(f"{m}: {n}" for m, n in r["gold_entity_map"].items()), r["sexpr"])
              for r in raw_train if r["sexpr"] != "null"}
  assert {tuple(r) for r in train + valid} == expected
  assert test[0] == ["what does jamaican people speak ; structured knowledge: m.03_r3: Jamaica",
                     "(JOIN (R location.country.languages_spoken) m.03_r3)"]


def test_webqsp_validation_split_is_seeded(tmp_path):
  shared_data_path("webqsp")
  run_prepare("webqsp", tmp_path / "a", seed=0)
  run_prepare("webqsp", tmp_path / "b", seed=0)
  run_prepare("webqsp", tmp_path / "c", seed=1, webqsp_input="question")
  valid = lambda d: (tmp_path / d / "webqsp" / "validation.tsv").read_bytes()
  assert valid("a") == valid("b")
  questions_a = {r[0].split(" ; ")[0] for r in read_tsv(tmp_path / "a/webqsp/validation.tsv")}
  questions_c = {r[0] for r in read_tsv(tmp_path / "c/webqsp/validation.tsv")}
  assert questions_a != questions_c and len(questions_c) > 250


def test_webqsp_without_validation_split_keeps_all_non_null_train(tmp_path):
  shared_data_path("webqsp")
  info = run_prepare("webqsp", tmp_path, webqsp_valid_size=0)
  assert info["splits"] == {"train": 3098 - 107, "validation": 1639, "test": 1639}
  assert (tmp_path / "webqsp/validation.tsv").read_bytes() == (
      tmp_path / "webqsp/test.tsv").read_bytes()


def test_main_prints_counts(tmp_path, capsys):
  shared = shared_data_path()
  shared_data_path("webqsp")
  assert prepare.main(["--task", "webqsp", "--from", str(shared), "--data_dir", str(tmp_path)]) == 0
  out = capsys.readouterr().out
  assert "train: 2,682  validation: 309  test: 1,639" in out
  assert "sha256 verified: WebQSP_test.json, WebQSP_train.json" in out


# --- squad ----------------------------------------------------------------------------------
def test_squad_counts_and_answers_column(squad_dir):
  out, info = squad_dir
  assert info["splits"] == {"train": 87599, "validation": 10570}
  assert info["fields"] == ["input", "target", "answers_json"]
  rows = read_tsv(out / "validation.tsv")
  assert all(len(r) == 3 for r in rows)
  assert rows[0][1] == "Denver Broncos"
  assert json.loads(rows[0][2]) == ["Denver Broncos"] * 3
  assert rows[0][0].startswith("question: Which NFL team represented the AFC at Super Bowl 50 ? "
                               "context: Super Bowl 50 was an American football game")
  assert not (out / "test.tsv").exists()


def _raw_squad_examples(data):
  for article in data:
    for paragraph in article["paragraphs"]:
      for qa in paragraph["qas"]:
        yield {"id": qa["id"], "question": qa["question"], "context": paragraph["context"],
               "answers": {"text": [a["text"] for a in qa["answers"]]}}


def test_squad_rows_equal_t5_squad_preprocessor(squad_dir):
  """Same text as t5.data.preprocessors.squad (TF regexes) on real examples, including ones
  with newlines and Unicode spaces (U+3000, U+202F, U+2009, U+200B) that RE2 leaves alone."""
  tf = pytest.importorskip("tensorflow")
  t5_preprocessors = pytest.importorskip("t5.data.preprocessors")
  out, _ = squad_dir
  raw = shared_data_path("squad")
  dev = list(_raw_squad_examples(json.loads((raw / "dev-v1.1.json").read_text("utf-8"))["data"]))
  with gzip.open(raw / "train-v1.1.json.gz", "rt", encoding="utf-8") as f:
    train = list(_raw_squad_examples(json.load(f)["data"]))
  picks = {"validation": (dev, list(range(150)) + [3468, 7143]),
           "train": (train, [1483, 6662, 8632, 25409, 30188, 87598])}
  squad_fn = t5_preprocessors.squad.__wrapped__  # the per-example function under map_over_dataset
  for split, (examples, indices) in picks.items():
    rows = read_tsv(out / f"{split}.tsv")
    for i in indices:
      ex = squad_fn(tf.nest.map_structure(tf.constant, examples[i]))
      assert rows[i][0] == ex["inputs"].numpy().decode("utf-8"), (split, i)
      assert rows[i][1] == ex["targets"].numpy().decode("utf-8"), (split, i)
      answers = [a.decode("utf-8") for a in ex["answers"].numpy()]
      assert json.loads(rows[i][2]) == answers, (split, i)
