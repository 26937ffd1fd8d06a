"""The prepared accelerator check (`scripts/gpu_check.sh`, `synthetic-pretraining bench gpu`).

Prints, for the GPU goal configuration (T5-small v1.0, batch 128, 512/512 tokens, bfloat16
activations, float32 parameters and Adafactor state):
  * the device kind and count, jax/flax/optax versions;
  * per attention path (cuDNN, XLA, einsum): compile time, steps/s, tokens/s, model FLOPs/s and
    MFU (`model.flops` FLOPs over the datasheet peak of `bench.PEAK_TFLOPS`), the compiled step's
    memory analysis, the lowered step's dot_general output dtypes, and peak device memory;
  * agreement of one bfloat16 step with a float32 step (the loss at the same parameters, batch
    and dropout masks), and of cuDNN with XLA attention (every parameter's gradient, on a batch
    with padding so that the sequence lengths matter).
It imports only jax, flax, optax, numpy and gin (no TensorFlow, SeqIO or Orbax), so a bare GPU
machine runs it with `pip install gin-config` and this checkout on PYTHONPATH. `--smoke` runs the
same code at a toy size on any backend (the test suite runs it on CPU); without a GPU the cuDNN
path is skipped and the XLA/einsum pair is compared instead.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import platform
import re
import sys
import time
from typing import Any, Sequence

import numpy as np

from synthetic_pretraining import bench
from synthetic_pretraining import environment as sp_environment

GOAL = dict(model="t5_small", batch=128, lengths=(512, 512))
SMOKE = dict(model="tiny", batch=4, lengths=(32, 32))
IMPLS = ("cudnn", "xla", "einsum")
# Stated tolerances of the agreement checks (relative).
BF16_LOSS_RTOL = 2e-2  # one bf16 step's loss vs float32 (T5X-style mixed precision)
# cuDNN's bf16 gradient error (vs float32) at most this multiple of XLA's bf16 error, plus slack.
GRAD_ERROR_RATIO, GRAD_ERROR_SLACK = 1.5, 1e-3


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="scripts/gpu_check.sh",
      description="Train-step speed, MFU, memory and numerical agreement of the attention "
                  "paths on the accelerator jax sees (goal: t5_small, batch 128, 512/512, bf16).")
  parser.add_argument("--smoke", action="store_true",
                      help=f"toy size ({SMOKE['model']}, batch {SMOKE['batch']}, lengths "
                           f"{SMOKE['lengths'][0]}/{SMOKE['lengths'][1]}) for a CPU run")
  parser.add_argument("--model", default=None, help="preset (default t5_small; tiny with --smoke)")
  parser.add_argument("--batch", type=bench._positive_int, default=None)  # pylint: disable=protected-access
  parser.add_argument("--lengths", type=bench.parse_lengths, default=None)
  parser.add_argument("--impls", default=",".join(IMPLS),
                      help="attention paths to time, in order (default cudnn,xla,einsum; cudnn "
                           "is skipped without a GPU)")
  parser.add_argument("--steps", type=bench._positive_int, default=None,  # pylint: disable=protected-access
                      help="timed steps per path (default 20; 2 with --smoke)")
  parser.add_argument("--warmup", type=bench._non_negative_int, default=2)  # pylint: disable=protected-access
  parser.add_argument("--chunk_length", type=int, default=128,
                      help="LossConfig.chunk_length (0: unchunked logits)")
  parser.add_argument("--attention_dropout", type=float, default=0.0,
                      help="attention-probability dropout of every path (the fused paths "
                           "support only 0; residual/MLP dropout stays the preset's)")
  parser.add_argument("--dropout", type=float, default=None,
                      help="override the preset's dropout_rate (default: keep it, 0.1 for "
                           "t5_small)")
  parser.add_argument("--grad_batch", type=int, default=None,
                      help="batch of the gradient-agreement check (default 16; 2 with --smoke)")
  parser.add_argument("--time_budget", type=float, default=330.0,
                      help="seconds after which optional parts (the einsum path, the unchunked "
                           "variant) are skipped (default 330)")
  parser.add_argument("--variants", default="",
                      help="extra timed variants after the checks, comma-separated "
                           "PATH[:chunk=N][:dropout=R][:prng=IMPL][:logits=bf16], e.g. "
                           "'cudnn:chunk=0,cudnn:dropout=0,cudnn:prng=rbg' (chunk=0: unchunked "
                           "logits; prng: jax_default_prng_impl for the dropout masks; "
                           "logits=bf16: LossConfig.float32_logits=False)")
  parser.add_argument("--profile", default=None,
                      help="after timing the first path, trace 3 of its steps with "
                           "jax.profiler into this directory and print the GPU time by kernel")
  parser.add_argument("--compile_only", action="store_true",
                      help="only lower and compile each path's step: print its dot_general "
                           "result dtypes and compiled memory analysis (no device run, no checks; "
                           "works for the goal size on a CPU)")
  parser.add_argument("--devices", type=bench._positive_int, default=None,  # pylint: disable=protected-access
                      help="use the first N devices (default: all; the batches are split over "
                           "them)")
  parser.add_argument("--json", default=None, help="write all figures to this JSON file")
  args = parser.parse_args(list(argv))
  base = SMOKE if args.smoke else GOAL
  args.model = args.model or base["model"]
  args.batch = args.batch or base["batch"]
  args.lengths = args.lengths or base["lengths"]
  args.steps = args.steps or (2 if args.smoke else 20)
  args.grad_batch = args.grad_batch or (2 if args.smoke else 16)
  args.impls = [s.strip() for s in args.impls.split(",") if s.strip()]
  bad = [s for s in args.impls if s not in IMPLS]
  if bad or not args.impls:
    parser.error(f"--impls: unknown attention path(s) {bad or args.impls}; valid: {IMPLS}")
  if args.chunk_length < 0:
    parser.error(f"--chunk_length must be ≥ 0, got {args.chunk_length}")
  try:
    args.variants = [parse_variant(v) for v in args.variants.split(",") if v.strip()]
  except ValueError as e:
    parser.error(f"--variants: {e}")
  return args


def parse_variant(text: str) -> dict:
  """'cudnn:chunk=0:dropout=0' → {'impl': 'cudnn', 'chunk': 0, 'dropout': 0.0}."""
  impl, *options = [p.strip() for p in text.strip().split(":")]
  if impl not in IMPLS:
    raise ValueError(f"unknown attention path {impl!r} in {text!r}; valid: {IMPLS}")
  out: dict[str, Any] = {"impl": impl}
  for option in options:
    key, _, value = option.partition("=")
    try:
      if key == "chunk":
        out["chunk"] = int(value)
      elif key == "dropout":
        out["dropout"] = float(value)
      elif key == "prng":
        if not value:
          raise ValueError
        out["prng"] = value
      elif key == "logits":
        if value not in ("f32", "bf16"):
          raise ValueError
        out["logits"] = value
      else:
        raise KeyError(key)
    except (ValueError, KeyError):
      raise ValueError(f"bad option {option!r} in {text!r}; expected chunk=N, dropout=R, "
                       "prng=IMPL or logits=f32|bf16") from None
  return out


# ------------------------------------------------------------------------------------------------
# Analysis of one step (also used by the tests and on CPU).
DOT_RESULT = re.compile(r"stablehlo\.dot_general[^\n]*->\s*tensor<([^>\n]*)>")


def dot_general_dtypes(lowered_text: str) -> dict[str, int]:
  """{'bf16': n, 'f32': m} result dtypes of the dot_general ops of lowered StableHLO text."""
  counts = collections.Counter(t.split("x")[-1] for t in DOT_RESULT.findall(lowered_text))
  total = lowered_text.count("stablehlo.dot_general")
  if sum(counts.values()) != total:
    raise ValueError(f"parsed {sum(counts.values())} of {total} dot_general result types")
  return dict(counts)


def memory_analysis(compiled) -> dict[str, int]:
  m = compiled.memory_analysis()
  if m is None:
    return {}
  names = ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes",
           "alias_size_in_bytes", "generated_code_size_in_bytes")
  return {n: int(getattr(m, n)) for n in names if hasattr(m, n)}


def _gib(n: float) -> str:
  return f"{n / 2**30:.2f} GiB"


# ------------------------------------------------------------------------------------------------
DEVICES: list = []  # the devices of this run (set by main)


def make_trainer(config, chunk_length: int | None, seed: int = 0, float32_logits: bool = True):
  from synthetic_pretraining.train import optim  # pylint: disable=import-outside-toplevel
  from synthetic_pretraining.train import partitioning  # pylint: disable=import-outside-toplevel
  from synthetic_pretraining.train import trainer as trainer_lib  # pylint: disable=import-outside-toplevel
  mesh = partitioning.create_mesh(1, DEVICES or None)
  return trainer_lib.Trainer(
      config, optim.adafactor(optim.learning_rate_schedule("constant", 0.01)), mesh, seed=seed,
      loss_config=trainer_lib.LossConfig(chunk_length=chunk_length or None,
                                         float32_logits=float32_logits))


def config_for(args, impl: str, dtype: str = "bfloat16"):
  from synthetic_pretraining.model import t5  # pylint: disable=import-outside-toplevel
  overrides: dict[str, Any] = dict(dtype=dtype, attention_impl=impl,
                                   attention_dropout_rate=args.attention_dropout)
  if args.dropout is not None:
    overrides["dropout_rate"] = args.dropout
  return t5.get_config(args.model, **overrides)


def padded_batch(rng: np.random.Generator, batch: int, input_len: int, target_len: int,
                 vocab: int) -> dict[str, np.ndarray]:
  """Random tokens with suffix padding of random length in every row but the first."""
  b = bench.random_batches(rng, 1, batch, input_len, target_len, vocab)[0]
  for i in range(1, batch):
    b["encoder_input_tokens"][i, rng.integers(input_len // 2, input_len):] = 0
    cut = rng.integers(target_len // 2, target_len)
    b["decoder_target_tokens"][i, cut:] = 0
    b["decoder_input_tokens"][i, cut + 1:] = 0
    b["decoder_loss_weights"][i, cut:] = 0
  return b


def time_path(args, impl: str, chunk_length: int | None, batches, peak: float | None,
              dropout: float | None = None, prng: str | None = None,
              float32_logits: bool = True, profile_dir: str | None = None) -> dict:
  """Compiles and times the train step of one attention path; returns its figures."""
  import jax  # pylint: disable=import-outside-toplevel
  from synthetic_pretraining.model import flops  # pylint: disable=import-outside-toplevel
  if prng is not None:
    previous = jax.config.jax_default_prng_impl
    jax.config.update("jax_default_prng_impl", prng)
    try:
      return time_path(args, impl, chunk_length, batches, peak, dropout, None, float32_logits,
                       profile_dir)
    finally:
      jax.config.update("jax_default_prng_impl", previous)
  config = config_for(args, impl)
  if dropout is not None:
    config = dataclasses.replace(config, dropout_rate=dropout)
  trainer = make_trainer(config, chunk_length, float32_logits=float32_logits)
  state = trainer.create_state()
  device_batches = [trainer.shard_batch(b) for b in batches]
  start = time.perf_counter()
  with jax.set_mesh(trainer.mesh):
    lowered = trainer._train_step.lower(state, device_batches[0])  # pylint: disable=protected-access
    dots = dot_general_dtypes(lowered.as_text())
    compiled = lowered.compile()
  compile_s = time.perf_counter() - start
  memory = memory_analysis(compiled)
  if args.compile_only:
    return dict(impl=impl, chunk_length=chunk_length, dtype=config.dtype, compile_s=compile_s,
                memory=memory, dot_general_dtypes=dots)

  def run(state, i):
    with jax.set_mesh(trainer.mesh):
      return compiled(state, device_batches[i % len(device_batches)])

  state, metrics = run(state, 0)
  first = jax.device_get(metrics)
  for i in range(args.warmup):
    state, metrics = run(state, 1 + i)
  jax.block_until_ready((state, metrics))
  start = time.perf_counter()
  for i in range(args.steps):
    state, metrics = run(state, 1 + args.warmup + i)
  jax.block_until_ready((state, metrics))
  elapsed = time.perf_counter() - start
  kernels = None
  if profile_dir:
    with jax.profiler.trace(profile_dir, create_perfetto_trace=True):
      for i in range(3):
        state, metrics = run(state, i)
      jax.block_until_ready((state, metrics))
    kernels = summarize_trace(profile_dir, steps=3)
  input_len, target_len = args.lengths
  steps_per_s = args.steps / elapsed
  per_token = flops.model_flops_per_token(config, input_len, target_len)
  model_flops_per_s = steps_per_s * args.batch * target_len * per_token
  stats = {}
  try:
    stats = (DEVICES or jax.devices())[0].memory_stats() or {}
  except Exception:  # pylint: disable=broad-except
    pass
  del state, metrics
  return dict(impl=impl, chunk_length=chunk_length, dtype=config.dtype,
              prng=jax.config.jax_default_prng_impl,
              dropout_rate=config.dropout_rate, attention_dropout=config.attention_dropout,
              compile_s=compile_s, step_ms=1e3 / steps_per_s, steps_per_s=steps_per_s,
              target_tokens_per_s=steps_per_s * args.batch * target_len,
              all_tokens_per_s=steps_per_s * args.batch * (input_len + target_len),
              model_flops_per_step=per_token * args.batch * target_len,
              model_tflops_per_s=model_flops_per_s / 1e12,
              mfu=None if not peak else model_flops_per_s / peak,
              first_step_loss_per_token=float(first["loss"]) / max(float(first["num_tokens"]), 1),
              first_step_loss=float(first["loss"]), memory=memory, dot_general_dtypes=dots,
              peak_bytes_in_use=stats.get("peak_bytes_in_use"),
              bytes_limit=stats.get("bytes_limit"), float32_logits=float32_logits,
              kernels=kernels)


def summarize_trace(profile_dir: str, steps: int, top: int = 30) -> dict | None:
  """GPU time by kernel (ms per step) from the perfetto trace jax.profiler wrote, or None."""
  import glob  # pylint: disable=import-outside-toplevel
  import gzip  # pylint: disable=import-outside-toplevel
  paths = sorted(glob.glob(os.path.join(profile_dir, "**", "*perfetto_trace.json.gz"),
                           recursive=True))
  if not paths:
    print(f"profile: no perfetto trace under {profile_dir}", flush=True)
    return None
  with gzip.open(paths[-1], "rt", encoding="utf-8") as f:
    trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  processes = {e["pid"]: e.get("args", {}).get("name", "") for e in events
               if e.get("ph") == "M" and e.get("name") == "process_name"}
  threads = {(e["pid"], e.get("tid")): e.get("args", {}).get("name", "") for e in events
             if e.get("ph") == "M" and e.get("name") == "thread_name"}
  device = {pid for pid, n in processes.items()
            if ("gpu" in n.lower() or "/device:" in n.lower()) and "host" not in n.lower()}
  # Per device thread ("Stream #…" lines hold kernels, "XLA Ops" the HLO ops, "XLA Modules" the
  # whole step): total time and the top events by name.
  per_thread: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  for e in events:
    if e.get("ph") == "X" and e.get("pid") in device and "dur" in e:
      thread = threads.get((e["pid"], e.get("tid")), str(e.get("tid")))
      per_thread[thread][e.get("name", "?")] += float(e["dur"])
  print(f"profile ({paths[-1]}): processes {sorted(processes.values())}; device threads "
        f"{sorted(per_thread)}", flush=True)
  summary = {}
  for thread, by_name in sorted(per_thread.items()):
    total = sum(by_name.values())
    rows = sorted(by_name.items(), key=lambda kv: -kv[1])[:top]
    print(f"[{thread}] {total / 1e3 / steps:.2f} ms per step, {len(by_name)} names", flush=True)
    if "module" in thread.lower():
      rows = rows[:3]
    for name, us in rows:
      print(f"  {us / 1e3 / steps:8.3f} ms/step {100 * us / max(total, 1e-9):5.1f}%  {name[:140]}",
            flush=True)
    summary[thread] = dict(ms_per_step=total / 1e3 / steps,
                           top=[(n, us / 1e3 / steps) for n, us in rows])
  return dict(trace=paths[-1], threads=summary)


def one_step_loss(args, impl: str, dtype: str, batch, chunk_length) -> float:
  """The train step's loss (at the initial parameters) of one configuration."""
  import jax  # pylint: disable=import-outside-toplevel
  trainer = make_trainer(config_for(args, impl, dtype), chunk_length)
  state = trainer.create_state()
  _, metrics = trainer.train_step(state, trainer.shard_batch(batch))
  return float(jax.device_get(metrics)["loss"])


def gradients(args, impl: str, batch, chunk_length, dtype: str = "bfloat16"):
  """Every parameter's gradient of the summed loss (deterministic), on the host."""
  import jax  # pylint: disable=import-outside-toplevel
  from synthetic_pretraining.model import t5  # pylint: disable=import-outside-toplevel
  trainer = make_trainer(config_for(args, impl, dtype), chunk_length)
  params = trainer.init_params()
  device_batch = trainer.shard_batch(batch)

  def loss(p):
    return trainer._model_loss(p, device_batch, deterministic=True)[0]  # pylint: disable=protected-access

  with jax.set_mesh(trainer.mesh):
    grads = jax.jit(jax.grad(loss))(params)
  return t5.flatten_names(jax.device_get(grads))


def _rel(got: dict, want: dict, names) -> float:
  num = sum(float(np.sum((np.asarray(got[n], np.float64) - np.asarray(want[n], np.float64))**2))
            for n in names)
  den = sum(float(np.sum(np.asarray(want[n], np.float64)**2)) for n in names)
  return float(np.sqrt(num / max(den, 1e-300)))


def compare_gradients(got: dict, other: dict, ref: dict) -> dict:
  """Relative L2 errors of two bf16 gradients (`got`, `other`) against a float32 reference.

  `got` passes when its error is at most GRAD_ERROR_RATIO × `other`'s (+ GRAD_ERROR_SLACK), over
  all parameters together and over each relative position table, and its relative position
  gradients are non-zero: the fused kernel is as accurate as the plain bf16 computation.
  """
  names = sorted(ref)
  relpos = [n for n in names if "relpos_bias" in n]
  per_param = {n: (_rel(got, ref, [n]), _rel(other, ref, [n])) for n in names}
  out = dict(error_all=_rel(got, ref, names), other_error_all=_rel(other, ref, names),
             direct_all=_rel(got, other, names),
             relpos={n: dict(error=per_param[n][0], other_error=per_param[n][1],
                             norm=float(np.linalg.norm(np.asarray(got[n], np.float64))))
                     for n in relpos},
             worst_param=max(names, key=lambda n: per_param[n][0]))
  out["worst_error"] = per_param[out["worst_param"]][0]
  out["worst_other_error"] = per_param[out["worst_param"]][1]
  bound = lambda e: GRAD_ERROR_RATIO * e + GRAD_ERROR_SLACK
  out["ok"] = bool(out["error_all"] <= bound(out["other_error_all"]) and all(
      r["error"] <= bound(r["other_error"]) and r["norm"] > 0 for r in out["relpos"].values()))
  return out


# ------------------------------------------------------------------------------------------------
def environment() -> dict:
  import flax  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  import jaxlib  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  devices = jax.devices()
  env = dict(python=platform.python_version(), jax=jax.__version__, jaxlib=jaxlib.__version__,
             flax=flax.__version__, optax=optax.__version__, backend=jax.default_backend(),
             device_kind=devices[0].device_kind, device_count=len(devices),
             platform=devices[0].platform, xla_flags=sp_environment.process_value("XLA_FLAGS"))
  env["cudnn_version"] = None
  if env["platform"] == "gpu":
    try:
      from jax._src.lib import cuda_versions  # pylint: disable=import-outside-toplevel
      env["cudnn_version"] = cuda_versions.cudnn_get_version()
    except Exception:  # pylint: disable=broad-except
      pass
  return env


def format_rows(rows: list[dict]) -> str:
  header = ("variant", "chunk", "compile_s", "step_ms", "steps/s", "tgt_tok/s", "all_tok/s",
            "TFLOP/s", "MFU", "temp_mem", "peak_mem")
  lines = [header]
  for r in rows:
    mem = r.get("memory", {})
    lines.append((r.get("variant", r["impl"]), str(r["chunk_length"] or "-"), f"{r['compile_s']:.1f}",
                  f"{r['step_ms']:.1f}", f"{r['steps_per_s']:.2f}",
                  f"{r['target_tokens_per_s']:.0f}", f"{r['all_tokens_per_s']:.0f}",
                  f"{r['model_tflops_per_s']:.1f}",
                  "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%",
                  _gib(mem["temp_size_in_bytes"]) if "temp_size_in_bytes" in mem else "n/a",
                  _gib(r["peak_bytes_in_use"]) if r.get("peak_bytes_in_use") else "n/a"))
  widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
  out = ["  ".join(c.rjust(w) if i >= 2 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
         for row in lines]
  out.insert(1, "-" * len(out[0]))
  return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  t0 = time.perf_counter()
  # Modules loaded before the check (e.g. by other tests of the same process) are not its doing.
  preloaded = set(sys.modules)
  import jax  # pylint: disable=import-outside-toplevel
  env = environment()
  devices = jax.devices()
  if args.devices is not None:
    if args.devices > len(devices):
      print(f"gpu_check: --devices {args.devices} but jax sees {len(devices)}", file=sys.stderr)
      return 2
    devices = devices[:args.devices]
  DEVICES[:] = devices
  for name, size in (("--batch", args.batch), ("--grad_batch", args.grad_batch)):
    if size % len(devices):
      print(f"gpu_check: {name} {size} is not divisible by the {len(devices)} devices used "
            "(pass --devices)", file=sys.stderr)
      return 2
  env["devices_used"] = len(devices)
  print(f"jax {env['jax']} (jaxlib {env['jaxlib']}), flax {env['flax']}, optax {env['optax']}, "
        f"python {env['python']}", flush=True)
  print(f"devices: {env['device_count']} × {env['platform']} '{env['device_kind']}' (using "
        f"{len(devices)})"
        f"{'' if env['cudnn_version'] is None else ', cuDNN ' + str(env['cudnn_version'])}",
        flush=True)
  input_len, target_len = args.lengths
  on_gpu = env["platform"] == "gpu"
  impls = [i for i in args.impls if on_gpu or i != "cudnn"]
  notes = []
  if len(impls) < len(args.impls):
    notes.append(f"cudnn skipped: no GPU (platform {env['platform']})")
  per_device = bench.peak_flops_per_device(env["device_kind"], "bfloat16")
  peak = None if per_device is None else per_device * len(devices)
  if peak is None and env["platform"] == "cpu":
    peak = bench.measure_cpu_peak_flops("bfloat16", size=512 if args.smoke else 2048)
    notes.append("peak: measured bf16 matmul on this CPU")
  print(f"{args.model}, batch {args.batch}, lengths {input_len}/{target_len}, bfloat16 "
        f"activations, float32 params + Adafactor; dropout_rate "
        f"{config_for(args, 'einsum').dropout_rate}, attention dropout {args.attention_dropout}; "
        f"logits chunk {args.chunk_length or 'none'}; peak "
        f"{'n/a' if peak is None else f'{peak / 1e12:.1f} TFLOP/s'}; {args.steps} timed steps",
        flush=True)
  for n in notes:
    print(n, flush=True)

  rng = np.random.default_rng(0)
  from synthetic_pretraining.model import t5  # pylint: disable=import-outside-toplevel
  vocab = t5.get_config(args.model).vocab_size
  batches = bench.random_batches(rng, 2, args.batch, input_len, target_len, vocab)
  chunk = args.chunk_length or None
  rows: list[dict] = []
  skipped: list[str] = []
  result: dict[str, Any] = dict(environment=env, args={k: (list(v) if isinstance(v, tuple) else v)
                                                       for k, v in vars(args).items()},
                                rows=rows, skipped=skipped, notes=notes)

  def save() -> None:  # after every stage, so a run stopped at its time limit keeps its figures
    if args.json:
      result["total_s"] = time.perf_counter() - t0
      from synthetic_pretraining.train import checkpoints  # pylint: disable=g-import-not-at-top
      with checkpoints.atomic_output(args.json) as f:
        json.dump(result, f, indent=1, default=str)

  def timed(variant: dict, optional: bool) -> None:
    name = ":".join([variant["impl"]] + [f"{k}={v}" for k, v in variant.items() if k != "impl"])
    if optional and time.perf_counter() - t0 > args.time_budget:
      skipped.append(f"{name}: time budget ({args.time_budget:g} s) spent")
      return
    c = variant.get("chunk", chunk)
    try:
      row = time_path(args, variant["impl"], c or None, batches, peak, variant.get("dropout"),
                      variant.get("prng"), variant.get("logits", "f32") == "f32",
                      args.profile if not rows else None)
    except Exception as e:  # pylint: disable=broad-except
      print(f"[{name}] FAILED: {type(e).__name__}: {str(e)[:2000]}", flush=True)
      rows.append(dict(impl=variant["impl"], variant=name, chunk_length=c,
                       error=f"{type(e).__name__}: {e}"))
      return
    row["variant"] = name
    rows.append(row)
    mfu = "n/a" if row["mfu"] is None else f"{100 * row['mfu']:.1f}%"
    print(f"[{name}] {row['steps_per_s']:.2f} steps/s ({row['step_ms']:.1f} ms), "
          f"{row['target_tokens_per_s']:.0f} target tokens/s, "
          f"{row['model_tflops_per_s']:.1f} TFLOP/s, MFU {mfu}, compile "
          f"{row['compile_s']:.1f} s, first-step loss {row['first_step_loss']:.6g}, dropout "
          f"{row['dropout_rate']}, prng {row['prng']}, dot_general results "
          f"{row['dot_general_dtypes']}, memory {row['memory']}, peak in use so far "
          f"{row['peak_bytes_in_use']}  [{time.perf_counter() - t0:.0f} s]", flush=True)
    save()

  if args.compile_only:
    blv = args.batch * target_len * vocab * 4
    for variant in [{"impl": i} for i in impls] + args.variants:
      c = variant.get("chunk", chunk) or None
      row = time_path(args, variant["impl"], c, batches, peak, variant.get("dropout"))
      rows.append(row)
      print(f"[{variant['impl']}, chunk {c or '-'}] compiled in {row['compile_s']:.1f} s; "
            f"dot_general results {row['dot_general_dtypes']}; memory analysis "
            + ", ".join(f"{k[:-9]} {_gib(v)}" for k, v in row["memory"].items() if v)
            + f"; temp = {row['memory'].get('temp_size_in_bytes', 0) / blv:.2f} × the float32 "
            f"[batch × length × vocab] ({_gib(blv)})", flush=True)
      save()
    return 0

  # The required paths (cuDNN and XLA where available), then the two checks, then the optional
  # variants (the einsum path, --variants) while the time budget lasts.
  required = [i for i in impls if i != "einsum"] or impls[:1]
  for impl in required:
    timed({"impl": impl}, optional=False)
  good = [r for r in rows if "error" not in r]

  # Agreement 1: bf16 vs float32, one step's loss at the same params/batch/dropout masks.
  if good:
    ref = good[0]
    fp32_impl = "xla" if ref["impl"] == "cudnn" else ref["impl"]
    try:
      loss32 = one_step_loss(args, fp32_impl, "float32", batches[0], chunk)
      rel = abs(ref["first_step_loss"] - loss32) / abs(loss32)
      result["bf16_vs_fp32"] = dict(bf16_impl=ref["impl"], fp32_impl=fp32_impl,
                                    loss_bf16=ref["first_step_loss"], loss_fp32=loss32,
                                    rel_diff=rel, rtol=BF16_LOSS_RTOL,
                                    ok=bool(0 < rel <= BF16_LOSS_RTOL))
      print(f"bf16 vs float32, one step's loss: {ref['first_step_loss']:.6g} ({ref['impl']}) vs "
            f"{loss32:.6g} ({fp32_impl}, float32): relative difference {rel:.2e} "
            f"({'OK' if 0 < rel <= BF16_LOSS_RTOL else 'FAIL'}: must be > 0 and ≤ "
            f"{BF16_LOSS_RTOL:g})  [{time.perf_counter() - t0:.0f} s]", flush=True)
    except Exception as e:  # pylint: disable=broad-except
      result["bf16_vs_fp32"] = dict(error=f"{type(e).__name__}: {e}")
      print(f"bf16 vs float32 FAILED: {type(e).__name__}: {str(e)[:2000]}", flush=True)
    save()

  # Agreement 2: bf16 gradients of cuDNN vs XLA (XLA vs einsum without a GPU), each against
  # the float32 gradient (XLA path), on a batch with padding.
  pair = ("cudnn", "xla") if on_gpu else ("xla", "einsum")
  try:
    gbatch = padded_batch(np.random.default_rng(1), args.grad_batch, input_len, target_len, vocab)
    got = gradients(args, pair[0], gbatch, chunk)
    other = gradients(args, pair[1], gbatch, chunk)
    ref_impl = "xla" if pair[1] != "einsum" else "einsum"
    ref = gradients(args, ref_impl, gbatch, chunk, dtype="float32")
    cmp = compare_gradients(got, other, ref)
    cmp.update(pair=list(pair), reference=f"{ref_impl} float32", batch=args.grad_batch,
               ratio=GRAD_ERROR_RATIO, slack=GRAD_ERROR_SLACK)
    result["gradient_agreement"] = cmp
    relpos = "; ".join(f"{n.split('/')[0]} relpos {r['error']:.2e} vs {r['other_error']:.2e} "
                       f"(norm {r['norm']:.3g})" for n, r in cmp["relpos"].items())
    print(f"gradients, bf16 vs float32 ({ref_impl}), batch {args.grad_batch} with padding: "
          f"{pair[0]} error {cmp['error_all']:.2e}, {pair[1]} error {cmp['other_error_all']:.2e} "
          f"(all parameters; {pair[0]} vs {pair[1]} directly {cmp['direct_all']:.2e}); {relpos}; "
          f"worst parameter {cmp['worst_param']} {cmp['worst_error']:.2e} vs "
          f"{cmp['worst_other_error']:.2e} ({'OK' if cmp['ok'] else 'FAIL'}: {pair[0]} error ≤ "
          f"{GRAD_ERROR_RATIO:g} × {pair[1]}'s + {GRAD_ERROR_SLACK:g}, relpos gradient non-zero)"
          f"  [{time.perf_counter() - t0:.0f} s]", flush=True)
  except Exception as e:  # pylint: disable=broad-except
    result["gradient_agreement"] = dict(error=f"{type(e).__name__}: {e}", pair=list(pair))
    print(f"gradient agreement FAILED: {type(e).__name__}: {str(e)[:2000]}", flush=True)
  save()

  for impl in impls:
    if impl not in required:
      timed({"impl": impl}, optional=True)
  for variant in args.variants:
    if variant["impl"] in impls:
      timed(variant, optional=True)
  good = [r for r in rows if "error" not in r]
  losses = {r["variant"]: r["first_step_loss"] for r in good
            if r["chunk_length"] == chunk and r["dropout_rate"] == good[0]["dropout_rate"]
            and r["prng"] == good[0]["prng"]} if good else {}
  if len(losses) > 1:
    print(f"first-step loss by path (same params, batch, dropout masks): {losses}", flush=True)
    result["first_step_loss_by_path"] = losses
  leaked = sorted(m for m in sys.modules if m not in preloaded and m.split(".")[0] in (
      "tensorflow", "seqio", "orbax", "tensorflow_datasets", "t5"))
  result["leaked_modules"] = leaked

  result["total_s"] = time.perf_counter() - t0
  print()
  print(format_rows(good))
  for s in skipped:
    print(f"skipped: {s}")
  print(f"modules of TensorFlow/SeqIO/Orbax/t5 imported: {leaked or 'none'}")
  print(f"total {result['total_s']:.0f} s")
  save()
  failed = (len(good) < len(rows) or not result.get("bf16_vs_fp32", {}).get("ok")
            or not result.get("gradient_agreement", {}).get("ok") or leaked)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
