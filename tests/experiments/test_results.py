"""`synthetic-pretraining results` on run directories written by the test with metrics_io."""

import csv
import json
import os

import pytest

from synthetic_pretraining import cli
from synthetic_pretraining.experiments import results
from synthetic_pretraining.train import metrics_io

STEPS = (1000, 2000, 3000)


def write_run(run_dir, task, accuracy, scores, metric, run_json=None):
  """A fine-tuning run: validation accuracy and test `metric` per step, plus distractor records."""
  for step, acc, score in zip(STEPS, accuracy, scores):
    metrics_io.append(run_dir, step, "train", task, {"loss": 1.0, "accuracy": 0.99})
    metrics_io.append(run_dir, step, "training_eval", task, {"accuracy": acc, "loss": 2.0})
    values = {metric: score, "f1": 99.0} if score is not None else {"f1": 99.0}
    metrics_io.append(run_dir, step, "inference_eval", task, values)
  if run_json is not None:  # The labels part of the loop's run_info.json.
    with open(os.path.join(run_dir, "run_info.json"), "w", encoding="utf-8") as f:
      json.dump({"mixture_or_task_name": task, "labels": run_json}, f)
  return run_dir


def test_validation_accuracy_ties_pick_the_first_step(tmp_path):
  # Accuracy ties at 2000 and 3000: the first (2000) wins; the test score there (40) is reported,
  # though 3000 has the best test score (45). The train group's higher accuracy is ignored.
  run = write_run(str(tmp_path / "set" / "mtop"), "mtop", [0.5, 0.7, 0.7], [10.0, 40.0, 45.0],
                  "em")
  metrics_io.append(run, 2500, "training_eval", "mtop", {"accuracy": float("nan")})
  result = results.extract_run(run)
  assert (result.info.method, result.info.task, result.info.seed) == ("set", "mtop", 0)
  assert (result.metric, result.best_step, result.best_accuracy) == ("em", 2000, 0.7)
  assert (result.score, result.max_score, result.max_score_step) == (40.0, 45.0, 3000)
  assert result.note == ""


def test_cnndm_uses_rouge1_and_a_missing_test_score_is_a_gap(tmp_path):
  run = write_run(str(tmp_path / "lime" / "cnndm_10k" / "seed_3"), "cnndm_10k",
                  [0.1, 0.9, 0.2], [20.0, None, 25.0], "rouge1")
  result = results.extract_run(run)
  assert (result.info.seed, result.metric, result.best_step) == (3, "rouge1", 2000)
  assert result.score is None and result.max_score == 25.0
  assert "no inference_eval 'rouge1' at step 2000" in result.note


def _paper_like_runs(root):
  """Hand-computable runs. Best validation step is always 2000 (scores there are listed)."""
  acc = [0.5, 0.8, 0.6]
  at_best = lambda s: [s - 5, s, s + 1]  # test score at 1000/2000/3000; max is at 3000

  def run(method, task, seed, score, **kw):
    metric = "rouge1" if task == "cnndm_10k" else "em"
    return write_run(str(root / method / task / f"seed_{seed}"), task, acc, at_best(score),
                     metric, **kw)

  run("from_scratch", "mtop", 0, 20.0)
  run("off_the_shelf", "mtop", 0, 60.0)
  run("set", "mtop", 0, 40.0)  # benefit 50
  run("set", "mtop", 1, 50.0)  # benefit 75
  write_run(str(root / "exp_42"), "mtop", acc, at_best(30.0), "em",  # benefit 25
            run_json={"method": "lime", "task": "mtop", "seed": 0})
  run("from_scratch", "cnndm_10k", 0, 10.0)
  run("t5_1_1_small", "cnndm_10k", 0, 30.0)
  run("set", "cnndm_10k", 0, 25.0)  # benefit 75
  run("set", "cnndm_10k", 1, 22.0)  # benefit 60
  # webqsp: natural = scratch → undefined; retrosynthesis: no baselines at all.
  run("from_scratch", "webqsp", 0, 15.0)
  run("off_the_shelf", "webqsp", 0, 15.0)
  run("set", "webqsp", 0, 18.0)
  run("set", "retrosynthesis", 0, 70.0)


def test_table_benefits_averages_and_gaps(tmp_path):
  _paper_like_runs(tmp_path)
  runs = results.load_runs([str(tmp_path)])
  assert len(runs) == 13
  table = results.build_table(runs, natural_for={"cnndm_10k": "t5_1_1_small"})

  assert table.tasks == ["cnndm_10k", "mtop", "retrosynthesis", "webqsp"]
  assert table.methods == ["from_scratch", "lime", "set", "t5_1_1_small", "off_the_shelf"]
  assert table.compared == ["lime", "set"]
  set_mtop = table.benefits[("set", "mtop")]
  assert set_mtop.mean == pytest.approx(62.5) and set_mtop.std == pytest.approx(17.67767, 1e-5)
  set_cnndm = table.benefits[("set", "cnndm_10k")]
  assert set_cnndm.mean == pytest.approx(67.5) and set_cnndm.std == pytest.approx(10.6066, 1e-5)
  assert table.benefits[("lime", "mtop")].mean == pytest.approx(25.0)
  assert table.benefits[("lime", "mtop")].std is None
  assert ("lime", "cnndm_10k") not in table.benefits  # missing run: a gap, not 0
  assert ("set", "webqsp") in table.undefined and ("set", "webqsp") not in table.benefits
  assert ("set", "retrosynthesis") not in table.benefits
  # Averages over the tasks with a benefit: set (62.5 + 67.5) / 2, per-seed 62.5 and 67.5.
  set_avg, set_tasks = table.averages["set"]
  assert (set_avg.mean, set_tasks) == (pytest.approx(65.0), 2)
  assert set_avg.std == pytest.approx(3.535534, 1e-5)
  assert table.averages["lime"][0].mean == pytest.approx(25.0) and table.averages["lime"][1] == 1
  assert table.scores[("set", "mtop")].mean == pytest.approx(45.0)
  assert table.max_scores[("set", "mtop")].mean == pytest.approx(46.0)
  assert results.benefit_cell(table, "set", "webqsp") == results.UNDEFINED
  assert results.benefit_cell(table, "lime", "cnndm_10k") == results.GAP
  assert results.benefit_cell(table, "set", "mtop") == "62.5 ± 17.7"
  bars = results.plot_benefit(table).axes[0].patches  # lime's 5 groups, then set's
  assert [round(b.get_height(), 6) for b in bars] == [0, 25, 0, 0, 25, 67.5, 62.5, 0, 0, 65]
  notes = "\n".join(table.notes)
  assert "webqsp: natural (off_the_shelf) and scratch (from_scratch) score the same" in notes
  assert "retrosynthesis: no score for baseline(s) from_scratch, off_the_shelf" in notes


def test_command_writes_markdown_csv_and_png(tmp_path, capsys):
  _paper_like_runs(tmp_path / "runs")
  out = tmp_path / "out"
  status = cli.main(["results", str(tmp_path / "runs"), "--out", str(out),
                     "--natural-for", "cnndm_10k=t5_1_1_small"])
  assert status == 0
  printed = capsys.readouterr().out
  assert sorted(os.listdir(out)) == sorted(results.OUTPUT_FILES)
  assert (out / "benefit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

  markdown = (out / "results.md").read_text()
  assert markdown in printed
  assert "| set | 67.5 ± 10.6 | 62.5 ± 17.7 | – | undef. | 65.0 ± 3.5 (2/4 tasks) |" in markdown
  assert "| lime | – | 25.0 | – | – | 25.0 (1/4 tasks) |" in markdown
  assert "| from_scratch | 10.00 | 20.00 | – | 15.00 |" in markdown

  rows = {(r["method"], r["task"]): r for r in csv.DictReader(open(out / "results.csv"))}
  assert float(rows[("set", "mtop")]["benefit_mean"]) == pytest.approx(62.5)
  assert float(rows[("set", "mtop")]["benefit_std"]) == pytest.approx(17.67767, 1e-5)
  assert rows[("set", "mtop")]["n_seeds"] == "2"
  assert float(rows[("set", "cnndm_10k")]["score_mean"]) == pytest.approx(23.5)
  assert rows[("lime", "cnndm_10k")]["benefit_mean"] == ""
  assert rows[("lime", "cnndm_10k")]["note"] == "missing"
  assert rows[("set", "webqsp")]["note"] == "natural = scratch: benefit undefined"
  assert float(rows[("set", "average")]["benefit_mean"]) == pytest.approx(65.0)
  assert rows[("set", "average")]["benefit_n_tasks"] == "2"
  assert rows[("off_the_shelf", "cnndm_10k")]["score_mean"] == ""
  run_rows = list(csv.DictReader(open(out / "runs.csv")))
  assert len(run_rows) == 13 and {r["best_step"] for r in run_rows} == {"2000"}


def test_layout_file_orders_rows_and_adds_expected_gaps(tmp_path):
  _paper_like_runs(tmp_path / "runs")
  layout = tmp_path / "layout.json"
  layout.write_text(json.dumps({"natural": {"default": "off_the_shelf",
                                            "cnndm_10k": "t5_1_1_small"},
                                "methods": ["set", "nesting", "lime"],
                                "tasks": ["mtop", "cnndm_10k", "squad"]}))
  out = tmp_path / "out"
  assert results.main([str(tmp_path / "runs"), "--out", str(out), "--layout", str(layout)]) == 0
  markdown = (out / "results.md").read_text()
  header = "| method | mtop | cnndm_10k | squad | retrosynthesis | webqsp | average |"
  assert header in markdown
  assert "| set | 62.5 ± 17.7 | 67.5 ± 10.6 | – | – | undef. | 65.0 ± 3.5 (2/5 tasks) |" in (
      markdown)
  assert "| nesting | – | – | – | – | – | – |" in markdown
  assert "squad (em)" in markdown


def test_bad_inputs_fail_with_clear_errors(tmp_path, capsys):
  write_run(str(tmp_path / "a"), "mtop", [0.1, 0.2, 0.3], [1.0, 2.0, 3.0], "em",
            run_json={"method": "set", "task": "mtop", "sede": 1})
  assert results.main([str(tmp_path / "a"), "--out", str(tmp_path / "o")]) == 2
  assert "run_info.json: unknown label(s) ['sede']" in capsys.readouterr().err

  write_run(str(tmp_path / "b" / "set" / "mtop"), "mtop", [0.1, 0.2, 0.3], [1.0, 2.0, 3.0], "em")
  write_run(str(tmp_path / "c"), "mtop", [0.1, 0.2, 0.3], [1.0, 2.0, 3.0], "em",
            run_json={"method": "set", "task": "mtop", "seed": 0})
  with pytest.raises(ValueError, match="two runs of method 'set', task 'mtop', seed 0"):
    results.build_table(results.load_runs([str(tmp_path / "b"), str(tmp_path / "c")]))

  layout = tmp_path / "layout.json"
  layout.write_text('{"natrual": "t5"}')
  assert results.main([str(tmp_path / "b"), "--out", str(tmp_path / "o"), "--layout",
                       str(layout)]) == 2
  assert f"{layout}: unknown key(s) ['natrual']" in capsys.readouterr().err

  with open(tmp_path / "c" / "metrics.jsonl", "a") as f:
    f.write("{not json\n")
  with pytest.raises(ValueError, match=r"metrics.jsonl:10: not a JSON object"):
    results.extract_run(str(tmp_path / "c"))
  (tmp_path / "nothing").mkdir()
  with pytest.raises(ValueError, match="no run directories"):
    results.find_run_dirs([str(tmp_path / "nothing")])
  assert not os.path.exists(tmp_path / "o")  # nothing written on failure


def test_run_info_from_paths():
  info = results.infer_run_info("/x/runs/lime/code_translation/seed_4")
  assert (info.method, info.task, info.seed) == ("lime", "code_translation", 4)
  info = results.infer_run_info("runs/set/mtop")
  assert (info.method, info.task, info.seed) == ("set", "mtop", 0)
