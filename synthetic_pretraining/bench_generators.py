"""`synthetic-pretraining bench generators`: examples per second per core for every generator.

    synthetic-pretraining bench generators [--seconds 1] [--tasks set,deduct] [--lines]

Each generator runs single-process on blocks of 256 examples (`sample_ragged`, the flat block form
the streamed SeqIO source consumes) with VocabSpec.byte()
and a T5-like spec (symbols 2..31999, 100 extra ids, a stand-in encoder that needs no model).
Rates are examples per CPU second of this process (time.process_time), so other load on the machine
distorts them less than wall-clock rates would.

Ratios are printed against the release's figures (about 16 000 Set and 8 000 LIME deduct examples/s
on one core) and, measured in the same run, against pure-Python re-implementations of the
release's Set and LIME samplers (Python `random`, one example at a time), which makes the ratio
independent of the machine. `--lines` also times the file path (formatting `[ids]\\t[ids]` lines and
the dedup hash) that `generate` adds per example.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import time
from typing import Callable, Sequence

import numpy as np

from synthetic_pretraining.generators import base
from synthetic_pretraining.generators import malloc_tuning
from synthetic_pretraining.generators import registry
from synthetic_pretraining.vocab_spec import VocabSpec

RELEASE_RATES = {"set": 16_000, "deduct": 8_000}  # Examples/s on one core (the release).
BASELINE_TASKS = ("set", "union", "deduct")  # Re-implemented below for a same-run comparison.


def t5_like_spec() -> VocabSpec:
  """T5's id layout without the SentencePiece model (numbers/names encoded by a stand-in)."""
  return VocabSpec(symbol_low=2, symbol_high=31999, base_vocab_size=32000, num_extra_ids=100,
                   encode_fn=lambda text: [3] + [100 + ord(c) for c in text], space_piece_id=3,
                   name="t5-like")


def rate(step: Callable[[], int], seconds: float) -> float:
  """Examples per CPU second of `step` (which returns how many examples it made)."""
  step()  # Warm-up: caches, lazily built tables.
  made, start = 0, time.process_time()
  while True:
    made += step()
    spent = time.process_time() - start
    if spent >= seconds:
      return made / spent


def task_rate(task: base.SyntheticTask, seconds: float, with_lines: bool = False) -> float:
  rng = np.random.default_rng(0)

  def step():
    if not with_lines:  # The block form the stream source consumes.
      return task.sample_ragged(rng, base.BLOCK_SIZE)[1].num_rows
    examples = task.sample_block(rng, base.BLOCK_SIZE)
    for inputs, outputs in examples:
      line = f"{inputs.tolist()}\t{outputs.tolist()}"
      hashlib.blake2b(line[:line.index("\t")].encode(), digest_size=16).digest()
    return len(examples)

  return rate(step, seconds)


# -- the release's samplers, re-implemented in plain Python as a same-machine baseline -------------
def _release_style_set(rnd: random.Random, np_rng: np.random.RandomState, symbols: Sequence[int],
                       prefix: list[int]) -> tuple[list[int], list[int]]:
  n = rnd.randint(10, 220)
  k = rnd.randint(1, n)
  sizes = (np_rng.multinomial(n - k, np.ones(k) / k) + 1).tolist()
  run_tokens = rnd.choices(symbols, k=k)
  seq = []
  for token, size in zip(run_tokens, sizes):
    seq += [token] * size
  rnd.shuffle(seq)
  return prefix + seq, list(dict.fromkeys(seq))


def _release_style_union(rnd: random.Random, symbols: Sequence[int],
                         prefix: list[int]) -> tuple[list[int], list[int]]:
  total = rnd.randint(9, 219)
  a_len = rnd.randint(0, total)
  pool = rnd.sample(symbols, k=total // 2)
  a, b = rnd.choices(pool, k=a_len), rnd.choices(pool, k=total - a_len)
  return prefix + a + [32097] + b, list(set(a) | set(b)) or [32096]


_LIME_NAMES = (":", "<sep>", "<UPPER>", "[", "<LOWER>", "<MATH>", "]")


def _release_style_deduct(rnd: random.Random, symbols: list[int]) -> tuple[list[int], list[int]]:
  """One LIME deduct example the way the release builds it: per-example vocabulary copy, string
  assembly, item counting, symbol replacement and int parsing."""
  while True:
    vocab = list(symbols)
    ids = rnd.sample(vocab, k=68)
    upper, lower, math_ = ids[:24], ids[24:48], ids[48:68]
    n = rnd.randint(3, 5)
    p = rnd.choice(range(5, 20))
    draws = rnd.choices(upper[:n], k=2 * n)
    used = list(set(draws))
    pattern = draws + rnd.choices(math_, k=p)
    rnd.shuffle(pattern)
    subst, subst_text = {}, []
    for u in used:
      s = rnd.choices(lower + math_, k=rnd.randint(2, 8))
      subst[u] = s
      subst_text += [u, ":", "[", *s, "]", ","]
    subst_text = subst_text[:-1]
    result = [t for v in pattern for t in subst.get(v, [v])]
    header = " ".join(map(str, ["<UPPER>"] + used + ["<LOWER>"] + lower + ["<MATH>"] + math_
                                + ["<sep>"]))
    inputs = header + " " + " ".join(map(str, pattern + ["<sep>"] + subst_text))
    outputs = " ".join(map(str, result))
    if len(inputs.split(" ")) <= 220 and len(outputs.split(" ")) <= 220:
      break
  inputs = inputs.replace(" ,", "")
  for k, name in enumerate(_LIME_NAMES):
    inputs = inputs.replace(name, str(32000 + k))
  return [int(t) for t in inputs.split(" ")], [int(t) for t in outputs.split(" ")]


def baseline_rates(seconds: float, names: Sequence[str]) -> dict[str, float]:
  """Examples per CPU second of the plain-Python release-style samplers."""
  rnd, np_rng = random.Random(0), np.random.RandomState(0)
  symbols = tuple(range(2, 32000))
  symbol_list = list(symbols)
  steps = {
      "set": lambda: _release_style_set(rnd, np_rng, symbols, [356, 32099]),
      "union": lambda: _release_style_union(rnd, symbols, [7021, 32099]),
      "deduct": lambda: _release_style_deduct(rnd, symbol_list),
  }

  def repeat(one):
    def step():
      for _ in range(16):
        one()
      return 16
    return step

  return {name: rate(repeat(steps[name]), seconds) for name in names if name in steps}


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="synthetic-pretraining bench generators",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--seconds", type=float, default=1.0, help="CPU seconds per measurement")
  parser.add_argument("--tasks", default="", help="comma-separated paper ids (default: all)")
  parser.add_argument("--lines", action="store_true",
                      help="also time line formatting + dedup hashing (the `generate` file path)")
  parser.add_argument("--no_malloc_tuning", action="store_true",
                      help="keep glibc's default allocator thresholds (see malloc_tuning.py)")
  args = parser.parse_args(argv)
  if not args.no_malloc_tuning:
    malloc_tuning.keep_freed_memory()
  names = [n for n in args.tasks.split(",") if n] or list(registry.TASK_NAMES)
  specs = {"byte": VocabSpec.byte(), "t5-like": t5_like_spec()}
  columns = list(specs) + (["t5-like+lines"] if args.lines else [])
  print(f"examples per CPU second, blocks of {base.BLOCK_SIZE}, one process, malloc tuning "
        f"{'off' if args.no_malloc_tuning else 'on'}")
  print(f"{'task':<18}" + "".join(f"{c:>16}" for c in columns))
  ours: dict[str, float] = {}
  for name in names:
    cells, problem = [], ""
    for column in columns:
      try:
        task = registry.get_task(name, specs[column.split("+")[0]])
      except ValueError as e:
        cells.append("n/a")
        problem = str(e)
        continue
      r = task_rate(task, args.seconds, with_lines=column.endswith("+lines"))
      if column == "t5-like":
        ours[name] = r
      cells.append(f"{r:,.0f}")
    print(f"{name:<18}" + "".join(f"{c:>16}" for c in cells)
          + (f"   ({problem})" if problem else ""), flush=True)

  compared = [n for n in BASELINE_TASKS if n in ours]
  if compared:
    baselines = baseline_rates(args.seconds, compared)
    print("\nspeed-up on the T5-like spec; baseline = the release's sampler in plain Python, "
          "measured in this run")
    print(f"{'task':<18}{'ours/s':>12}{'baseline/s':>12}{'ratio':>8}{'release/s':>12}{'ratio':>8}")
    for name in compared:
      quoted = RELEASE_RATES.get(name)
      print(f"{name:<18}{ours[name]:>12,.0f}{baselines[name]:>12,.0f}"
            f"{ours[name] / baselines[name]:>7.1f}x"
            + (f"{quoted:>12,}{ours[name] / quoted:>7.1f}x" if quoted else f"{'-':>12}{'-':>8}"))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
