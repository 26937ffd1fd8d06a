"""`synthetic-pretraining generate`: dedup, split, format, atomic writes, errors, processes."""

import logging
import pathlib

import pytest

from synthetic_pretraining.generators import base
from synthetic_pretraining.generators import cli
from synthetic_pretraining.generators import lines
from synthetic_pretraining.generators.registry import get_task
from synthetic_pretraining.vocab_spec import VocabSpec

# first_token over 2 symbols with exactly 10 tokens: only 1024 distinct inputs, so many repeats.
TINY = ["--task", "first_token", "--length_range", "10,10", "--knob", "alphabet=[40, 41]"]


def _read(path):
  return pathlib.Path(path).read_text().splitlines()


def test_dedup_and_split_counts(tmp_path, caplog):
  caplog.set_level(logging.INFO)
  argv = TINY + ["--num_examples", "3000", "--out", str(tmp_path), "--num_train", "500",
                 "--num_valid", "200", "--seed", "4"]
  assert cli.main(argv) == 0
  train = _read(tmp_path / "first_token" / "train.txt")
  valid = _read(tmp_path / "first_token" / "valid.txt")
  # Reference: the same stream deduplicated by input string, first occurrence kept.
  task = get_task("first_token", VocabSpec.byte(), length_range=(10, 10), alphabet=[40, 41])
  seen, kept = set(), []
  for inputs, outputs in base.iter_examples(task, seed=4, shard=0, start=0, stop=3000):
    line = lines.format_line(inputs, outputs)
    if line.split("\t")[0] not in seen:
      seen.add(line.split("\t")[0])
      kept.append(line)
  assert 500 + 200 < len(kept) < 1024
  assert train == kept[:500] and valid == kept[-200:]
  assert f"removed {3000 - len(kept)} duplicate inputs, kept {len(kept)}" in caplog.text
  assert "overlap" not in caplog.text
  assert sorted(p.name for p in (tmp_path / "first_token").iterdir()) == ["train.txt", "valid.txt"]


def test_overlap_is_logged(tmp_path, caplog):
  caplog.set_level(logging.INFO)
  argv = TINY + ["--num_examples", "3000", "--out", str(tmp_path), "--num_train", "900",
                 "--num_valid", "300"]
  assert cli.main(argv) == 0
  kept = len(_read(tmp_path / "first_token" / "train.txt"))
  total = int(caplog.text.split(" kept ")[1].split()[0])
  assert kept == min(900, total) and "overlap by" in caplog.text


def test_lines_round_trip_through_parse_line(tmp_path):
  assert cli.main(["--task", "union", "--num_examples", "300", "--out", str(tmp_path),
                   "--num_valid", "50", "--seed", "1"]) == 0
  task = get_task("union", VocabSpec.byte())
  expected = list(base.iter_examples(task, seed=1, shard=0, start=0, stop=300))
  text = (tmp_path / "union" / "train.txt").read_text()
  assert text.startswith("[") and ", " in text and "\t[" in text and text.endswith("]\n")
  parsed = list(lines.read_data_file(tmp_path / "union" / "train.txt"))
  assert len(parsed) == 300
  for (inputs, outputs), (i, o) in zip(parsed, expected):
    assert inputs == i.tolist() and outputs == o.tolist()
    assert lines.format_line(inputs, outputs) == f"{i.tolist()}\t{o.tolist()}"


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch, error):
  real = cli.format_examples
  calls = []

  def failing(*args):
    calls.append(args)
    if len(calls) == 2:
      raise error("stop")
    return real(*args)

  monkeypatch.setattr(cli, "format_examples", failing)
  task = get_task("identity", VocabSpec.byte())
  with pytest.raises(error):
    cli.write_task_files(task, tmp_path, num_examples=1000, num_valid=10, chunk_size=256)
  # No final file, no temp file, and no skeleton folder left by the failed run.
  assert not (tmp_path / "identity").exists() and tmp_path.exists()


def test_existing_files_survive_a_failed_run(tmp_path, monkeypatch):
  task = get_task("identity", VocabSpec.byte())
  cli.write_task_files(task, tmp_path, num_examples=300, num_valid=10)
  before = (tmp_path / "identity" / "train.txt").read_text()

  def boom(*args):
    raise OSError("disk full")

  monkeypatch.setattr(cli, "_split_into", boom)
  with pytest.raises(OSError):
    cli.write_task_files(task, tmp_path, num_examples=500, num_valid=10)
  assert (tmp_path / "identity" / "train.txt").read_text() == before
  assert sorted(p.name for p in (tmp_path / "identity").iterdir()) == ["train.txt", "valid.txt"]


def test_malformed_line_reports_file_and_line(tmp_path):
  path = tmp_path / "train.txt"
  path.write_text("[1, 2]\t[3]\n[4, 5]\t[6]\n[7, 8] [9]\n")
  with pytest.raises(lines.DataFileError) as e:
    list(cli.read_data_file(path))
  assert f"{path}:3:" in str(e.value) and "2 tab-separated fields" in str(e.value)
  path.write_text("[1, 2]\t[3]\n[4, five]\t[6]\n")
  with pytest.raises(lines.DataFileError, match=r"train.txt:2: expected integers"):
    list(cli.read_data_file(path))


def test_unknown_task_lists_valid_names(tmp_path, capsys):
  assert cli.main(["--task", "sets", "--num_examples", "5", "--out", str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert "unknown task 'sets'" in err and "set1_minus_set2" in err and "deduct" in err
  assert not (tmp_path / "sets").exists()


def test_vocab_errors_are_clear(tmp_path, monkeypatch, capsys):
  def offline():
    raise OSError("Could not resolve host: www.googleapis.com")

  monkeypatch.setattr(VocabSpec, "t5", staticmethod(offline))
  with pytest.raises(cli.VocabLoadError, match="needs access to Google Cloud Storage"):
    cli.load_vocab("t5")
  assert cli.main(["--task", "set", "--num_examples", "5", "--out", str(tmp_path),
                   "--vocab", "t5"]) == 2
  assert "--vocab byte" in capsys.readouterr().err
  with pytest.raises(cli.VocabLoadError, match="no such file"):
    cli.load_vocab(str(tmp_path / "missing.model"))


@pytest.mark.slow
def test_processes_do_not_change_the_files(tmp_path):
  common = ["--task", "sort", "--num_examples", "1300", "--num_valid", "100", "--seed", "9"]
  assert cli.main(common + ["--out", str(tmp_path / "one")]) == 0
  task = get_task("sort", VocabSpec.byte())
  recipe = cli.TaskRecipe("sort", "byte")
  stats = cli.write_task_files(task, tmp_path / "two", 1300, seed=9, num_valid=100, processes=2,
                               recipe=recipe, chunk_size=256)
  assert stats.generated == 1300
  for name in ("train.txt", "valid.txt"):
    assert ((tmp_path / "one" / "sort" / name).read_bytes()
            == (tmp_path / "two" / "sort" / name).read_bytes())


def test_targets_only_task_is_deduplicated_on_whole_lines(tmp_path):
  """nesting_language has empty inputs: dedup by input would keep a single line."""
  argv = ["--task", "nesting_language", "--num_examples", "300", "--out", str(tmp_path),
          "--num_train", "250", "--num_valid", "20", "--seed", "1"]
  assert cli.main(argv) == 0
  train = _read(tmp_path / "nesting_language" / "train.txt")
  assert len(train) == 250 and len(set(train)) == 250
  assert all(line.startswith("[]\t[") for line in train)
