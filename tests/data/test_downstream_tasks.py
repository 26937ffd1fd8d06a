"""SeqIO downstream tasks over prepared splits: tokenised examples, lazy data dir, metrics."""

import json
import pathlib

import gin
import numpy as np
import pytest
import seqio
import tensorflow as tf

from synthetic_pretraining.data import downstream
from synthetic_pretraining.data import downstream_tasks as dt
from synthetic_pretraining.data import metrics
from synthetic_pretraining.data import prepare
from synthetic_pretraining.data import train_vocab
from synthetic_pretraining.data.downstream import common
from tests.data.test_prepare_formats import MTOP
from tests.data.test_prepare_formats import write_mtop

BYTES = seqio.ByteVocabulary()
LENGTHS = {"inputs": 256, "targets": 128}

ROWS = {
    "cnndm_10k": [("an article . with two sentences .", "short summary ."),
                  ("another article here .", "another summary .")],
    "code_translation": [("public int F() {return 1;}", "public virtual int F(){return 1;}"),
                         ("void G() {}", "public virtual void G(){}")],
    "retrosynthesis": [("COC(=O)c1ccccc1", "CO.O=C(O)c1ccccc1"), ("CCO", "CC=O")],
    "webqsp": [("what does jamaican people speak ; structured knowledge: m.03_r3: Jamaica",
                "(JOIN (R location.country.languages_spoken) m.03_r3)"),
               ("who is x ; structured knowledge: m.01: X", "null")],
    "mtop": [("set an alarm at 6am", "[IN:CREATE_ALARM [SL:DATE_TIME at 6am ] ]")],
    "squad": [("question: Who won ? context: Denver won .", "Denver",
               json.dumps(["Denver", "Denver Broncos"]))],
}


def write_prepared(root: pathlib.Path, rows=ROWS) -> pathlib.Path:
  for task, task_rows in rows.items():
    for split in dt.SPLITS[task]:
      path = root / task / f"{split}.tsv"
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_text("".join("\t".join(r) + "\n" for r in task_rows), encoding="utf-8")
  return root


def examples(task_name, split="validation", lengths=LENGTHS):
  task = seqio.get_mixture_or_task(task_name)
  ds = task.get_dataset(lengths, split=split, shuffle=False, try_in_mem_cache=False)
  return list(ds.as_numpy_iterator())


def test_feature_lengths_follow_spec():
  assert dt.FEATURE_LENGTHS == {
      "cnndm_10k": {"inputs": 512, "targets": 256},
      "code_translation": {"inputs": 1024, "targets": 1024},
      "mtop": {"inputs": 1024, "targets": 128},
      "retrosynthesis": {"inputs": 256, "targets": 256},
      "squad": {"inputs": 512, "targets": 128},
      "webqsp": {"inputs": 2048, "targets": 256},
  }
  assert set(dt.DOWNSTREAM_TASKS) == set(downstream.TASK_NAMES)


def test_every_task_yields_tokenised_examples_with_eos(tmp_path):
  root = write_prepared(tmp_path)
  names = dt.register_downstream_tasks(BYTES, str(root), suffix="_bytes_test")
  assert names == [t + "_bytes_test" for t in dt.DOWNSTREAM_TASKS]
  for task in dt.DOWNSTREAM_TASKS:
    got = examples(task + "_bytes_test", "validation")
    assert len(got) == len(ROWS[task])
    for ex, row in zip(got, ROWS[task]):
      assert ex["inputs_pretokenized"].decode() == row[0]
      assert ex["targets_pretokenized"].decode() == row[1]
      np.testing.assert_array_equal(ex["inputs"], BYTES.encode(row[0]) + [1])
      np.testing.assert_array_equal(ex["targets"], BYTES.encode(row[1]) + [1])
      if task == "squad":
        assert json.loads(ex["answers"]) == ["Denver", "Denver Broncos"]
  for task in dt.DOWNSTREAM_TASKS:
    source = seqio.get_mixture_or_task(task + "_bytes_test").source
    assert tuple(source.splits) == dt.SPLITS[task]
    assert [source.list_shards(s) for s in source.splits] == [
        [str(root / task / f"{s}.tsv")] for s in dt.SPLITS[task]]
  task = seqio.get_mixture_or_task("squad_bytes_test")
  assert task.source.splits == ("train", "validation")
  assert [f.__name__ for f in task.metric_fns] == ["squad"]
  assert [f.__name__ for f in seqio.get_mixture_or_task("cnndm_10k_bytes_test").metric_fns] == [
      "rouge"]
  assert [f.__name__ for f in seqio.get_mixture_or_task("mtop_bytes_test").metric_fns] == [
      "exact_match_f1", "chrf"]


def test_truncation_keeps_eos_for_squad_only(tmp_path):
  root = write_prepared(tmp_path)
  dt.register_downstream_tasks(BYTES, str(root), suffix="_trunc_test")
  short = {"inputs": 8, "targets": 4}
  squad = examples("squad_trunc_test", lengths=short)[0]
  assert squad["inputs"][-1] == 1 and len(squad["inputs"]) == 8  # append_eos_after_trim
  code = examples("code_translation_trunc_test", lengths=short)[0]
  assert len(code["inputs"]) == 8 and code["inputs"][-1] != 1  # EOS appended before trimming


def test_mtop_end_to_end_from_official_format(tmp_path):
  raw = write_mtop(tmp_path / "raw")
  prepare.prepare_task("mtop", data_dir=tmp_path / "prepared", from_dir=raw, log=lambda _: None)
  dt.register_downstream_tasks(BYTES, str(tmp_path / "prepared"), suffix="_mtop_test")
  got = examples("mtop_mtop_test", "train")
  assert [ex["inputs_pretokenized"].decode() for ex in got] == [
      " ".join(r[7]) for r in MTOP["train.txt"]]
  assert [BYTES.decode(ex["targets"].tolist()) for ex in got] == [r[6] for r in MTOP["train.txt"]]


def test_data_dir_is_resolved_when_the_dataset_is_built(tmp_path, monkeypatch):
  # The folder comes from gin when the dataset is built; the environment plays no part.
  monkeypatch.setenv(common.DATA_DIR_ENV, str(write_prepared(tmp_path / "env")))
  dt.register_downstream_tasks(BYTES, suffix="_lazy_test")  # nothing is read here
  try:
    gin.bind_parameter("downstream_data_dir.data_dir", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"nowhere/retrosynthesis/train\.tsv not found: "
                       r"run `synthetic-pretraining prepare --task retrosynthesis"):
      examples("retrosynthesis_lazy_test", "train")
    gin_root = write_prepared(tmp_path / "gin", {**ROWS, "retrosynthesis": [("CC", "C")]})
    gin.bind_parameter("downstream_data_dir.data_dir", str(gin_root))
    assert examples("retrosynthesis_lazy_test")[0]["targets_pretokenized"] == b"C"
    other_root = write_prepared(tmp_path / "other")
    gin.bind_parameter("downstream_data_dir.data_dir", str(other_root))
    assert examples("retrosynthesis_lazy_test")[0]["targets_pretokenized"] == b"CO.O=C(O)c1ccccc1"
  finally:
    gin.clear_config()


def test_line_with_wrong_field_count_raises(tmp_path):
  root = write_prepared(tmp_path, {**ROWS, "code_translation": [("only one field",)]})
  dt.register_downstream_tasks(BYTES, str(root), suffix="_bad_test")
  with pytest.raises(tf.errors.InvalidArgumentError, match="does not have 2 TAB-separated fields"):
    examples("code_translation_bad_test")


def test_postprocessors_decoded_raw_and_all_answers():
  example = {"targets": np.array(BYTES.encode("abc") + [1, 0, 0], np.int32),
             "targets_pretokenized": b"abcdef"}
  assert dt.target_text("abcdef", example, is_target=True, vocabulary=BYTES) == "abc"
  assert dt.target_text("abcdef", example, is_target=True, vocabulary=BYTES, mode="raw") == "abcdef"
  assert dt.target_text("prediction", example, is_target=False, vocabulary=BYTES) == "prediction"
  squad_example = {"answers": json.dumps(["a", "b"]).encode()}
  assert dt.squad_answers("a", squad_example, is_target=True) == ["a", "b"]
  assert dt.squad_answers("pred", squad_example) == "pred"
  with pytest.raises(ValueError, match="target_text_mode"):
    dt.register_downstream_tasks(BYTES, suffix="_x", target_text_mode="pretty")


@pytest.mark.parametrize("mode,expected_em", [("decoded", 100.0), ("raw", 0.0)])
def test_evaluator_scores_with_task_metrics(tmp_path, mode, expected_em):
  """seqio.Evaluator end to end: predictions = the (truncated) target ids. Decoded targets match
  them exactly; raw targets are longer than the 8-byte target length, so EM is 0."""
  root = write_prepared(tmp_path)
  dt.register_downstream_tasks(BYTES, str(root), suffix=f"_eval_{mode}",
                               target_text_mode=mode)

  def predict_fn(ds):
    return [(i, ex["decoder_target_tokens"]) for i, ex in ds.as_numpy_iterator()]

  for task in ("code_translation", "squad") if mode == "decoded" else ("code_translation",):
    evaluator = seqio.Evaluator(f"{task}_eval_{mode}",
                                feature_converter=seqio.EncDecFeatureConverter(pack=False),
                                eval_split="validation",
                                sequence_length={"inputs": 64, "targets": 8})
    result, _ = evaluator.evaluate(compute_metrics=True, predict_fn=predict_fn, score_fn=None)
    scores = result.result()[f"{task}_eval_{mode}"]
    if task == "squad":  # all answers, SQuAD normalisation: "Denver" (6 bytes + EOS) matches
      assert scores == {"em": 100.0, "f1": 100.0}
    else:
      assert scores["em"] == expected_em


def test_with_a_trained_sentencepiece_vocabulary(tmp_path):
  root = write_prepared(tmp_path / "prepared")
  model = train_vocab.train(tmp_path / "spm.model", train_vocab.prepared_tsvs(root),
                            vocab_size=120)
  vocab = seqio.SentencePieceVocabulary(str(model), extra_ids=100)
  dt.register_downstream_tasks(vocab, str(root), suffix="_spm_test")
  got = examples("webqsp_spm_test", "test")
  assert [vocab.decode(ex["targets"].tolist()) for ex in got] == [r[1] for r in ROWS["webqsp"]]
  assert all(ex["inputs"][-1] == 1 and ex["inputs"].max() < vocab.vocab_size for ex in got)
  assert metrics.exact_match_f1([r[1] for r in ROWS["webqsp"]],
                                [r[1] for r in ROWS["webqsp"]])["em"] == 100.0
