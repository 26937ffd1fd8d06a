"""The downstream catalogue: one entry per task from which registrations, metric tables and the
fine-tuning gin files derive; adding a task is one entry."""

import pathlib

import gin
import pytest
import seqio

from synthetic_pretraining.data import catalogue
from synthetic_pretraining.data import downstream
from synthetic_pretraining.data import downstream_tasks
from synthetic_pretraining.data import metrics
from synthetic_pretraining.experiments import results
from synthetic_pretraining.train import main

GIN_DIR = pathlib.Path(main.DEFAULT_GIN_DIR)
BYTES = seqio.ByteVocabulary(extra_ids=100)


@pytest.mark.parametrize("name", sorted(catalogue.CATALOGUE))
def test_finetune_gin_files_are_the_catalogue(name):
  text = (GIN_DIR / "experiments" / "finetune" / f"{name}.gin").read_text(encoding="utf-8")
  assert text == catalogue.finetune_gin(catalogue.CATALOGUE[name]), (
      "regenerate with `python -m synthetic_pretraining.data.catalogue --write "
      "gin/experiments/finetune`")


def test_every_finetune_gin_file_has_an_entry():
  files = {p.stem for p in (GIN_DIR / "experiments" / "finetune").glob("*.gin")}
  assert files == {n for n, t in catalogue.CATALOGUE.items() if t.finetune}


@pytest.mark.parametrize("name", sorted(catalogue.CATALOGUE))
def test_entries_agree_with_their_converter_and_registration(name):
  entry = catalogue.CATALOGUE[name]
  converter = downstream.CONVERTERS[entry.converter]
  assert converter.splits == entry.splits and converter.num_fields == entry.num_fields
  downstream_tasks.register_downstream_tasks(BYTES, "/nowhere", suffix="_catalogue_test",
                                             tasks=[entry])
  task = seqio.get_mixture_or_task(name + "_catalogue_test")
  assert tuple(task.splits) == entry.splits
  assert [f.__name__ for f in task.metric_fns] == list(entry.metrics)
  assert results.metric_for_task(name) == entry.reported_metric
  assert [f.__name__ for f in metrics.METRIC_FNS[name]] == list(entry.metrics)


def test_a_toy_task_is_one_catalogue_entry(tmp_path, monkeypatch):
  entry = catalogue.DownstreamTask(
      "toy_upper", converter=None, splits=("train", "validation", "test"),
      fields=("inputs", "targets"), feature_lengths={"inputs": 16, "targets": 16},
      metrics=("exact_match_f1",), reported_metric="f1",
      finetune=catalogue.FinetuneSettings(1e-3, 500, 8, 100, 16, False, "test", 4))
  monkeypatch.setitem(catalogue.CATALOGUE, entry.name, entry)  # The one entry.
  data = tmp_path / "data" / "toy_upper"
  data.mkdir(parents=True)
  rows = [("abc", "ABC"), ("hi there", "HI THERE")]
  for split in entry.splits:
    (data / f"{split}.tsv").write_text("".join(f"{a}\t{b}\n" for a, b in rows))

  # SeqIO registration (with every other task), read from the data folder bound in gin.
  names = downstream_tasks.register_downstream_tasks(BYTES)
  assert "toy_upper" in names
  task = seqio.get_mixture_or_task("toy_upper")
  try:
    gin.bind_parameter("downstream_data_dir.data_dir", str(tmp_path / "data"))
    got = list(task.get_dataset({"inputs": 16, "targets": 16}, "test", shuffle=False)
               .as_numpy_iterator())
  finally:
    gin.clear_config()
  assert [BYTES.decode(ex["targets"].tolist()) for ex in got] == ["ABC", "HI THERE"]
  assert [int(ex["targets"][-1]) for ex in got] == [1, 1]  # EOS appended
  assert task.metric_fns == [metrics.exact_match_f1]
  # The results table's reported metric.
  assert results.metric_for_task("toy_upper") == "f1"
  # The fine-tuning gin file, parsed as a run would.
  (tmp_path / "gin").mkdir()
  (tmp_path / "gin" / "toy_upper.gin").write_text(catalogue.finetune_gin(entry))
  main.parse_gin(["models/tiny.gin", str(tmp_path / "gin" / "toy_upper.gin")],
                 ["MODEL_DIR = '/tmp/x'"])
  try:
    assert gin.query_parameter("%MIXTURE_OR_TASK_NAME") == "toy_upper"
    assert gin.query_parameter("%TRAIN_STEPS") == 500
    assert gin.query_parameter("%TASK_FEATURE_LENGTHS") == {"inputs": 16, "targets": 16}
    assert gin.query_parameter("%EVALUATOR_NUM_EXAMPLES") == 4
  finally:
    gin.clear_config()


def test_bad_entries_are_rejected():
  with pytest.raises(ValueError, match="'bad'.*unknown metric function.*bleu"):
    catalogue.DownstreamTask("bad", None, ("train",), ("inputs", "targets"),
                             {"inputs": 4, "targets": 4}, ("bleu",), "bleu")
  with pytest.raises(ValueError, match="'bad'.*squad_answers postprocessor needs an 'answers'"):
    catalogue.DownstreamTask("bad", None, ("train",), ("inputs", "targets"),
                             {"inputs": 4, "targets": 4}, ("squad",), "em",
                             postprocessor="squad_answers")
