"""The generator benchmark: its baselines are faithful samplers and it prints every figure."""

import random

import numpy as np

from synthetic_pretraining import bench_generators as bench
from synthetic_pretraining.generators import lime
from synthetic_pretraining.generators import simple_functions as F
from tests.generators.helpers import t5_like_spec


def test_release_style_baselines_make_valid_examples():
  rnd, np_rng = random.Random(0), np.random.RandomState(0)
  symbols = tuple(range(2, 32000))
  for _ in range(50):
    inputs, outputs = bench._release_style_set(rnd, np_rng, symbols, [356, 32099])
    assert 10 <= len(inputs) - 2 <= 220 and outputs == F.set_(inputs[2:], None)
    inputs, outputs = bench._release_style_union(rnd, symbols, [7021, 32099])
    a, b = F.split_input("union", inputs, t5_like_spec())
    assert F.task_output("union", (a, b), t5_like_spec()) == outputs
    inputs, outputs = bench._release_style_deduct(rnd, list(symbols))
    parts = lime.parse_example("deduct", inputs, outputs, list(range(32000, 32007)))
    assert lime.apply_substitution(parts.pattern, parts.substitution) == parts.result
    assert len(parts.lowers) == 24 and len(parts.maths) == 20


def test_main_prints_rates_and_ratios(capsys):
  assert bench.main(["--seconds", "0.01", "--tasks", "set,deduct,nesting_language"]) == 0
  out = capsys.readouterr().out
  rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
  for name in ("set", "deduct", "nesting_language"):
    assert len(rows[name]) >= 2 and all(float(v.replace(",", "")) > 0 for v in rows[name][:2])
  assert "baseline" in out and out.count("x") >= 4  # set and deduct: two ratios each.
