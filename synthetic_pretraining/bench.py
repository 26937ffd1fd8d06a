"""`synthetic-pretraining bench …`: benchmarks that print figures (never tests).

  bench train [--models tiny,t5_small] [--batch 8] [--lengths 128,128] [--steps 10]
              [--warmup 2] [--dtype preset|float32|bfloat16] [--num_partitions 1]
              [--hf auto|off] [--rounds 2] …
      Times the jitted, sharded train step of `Trainer` (Adafactor, the preset's dropout) on
      random token batches: steps/s, tokens/s, model FLOPs/s and MFU. Where `torch` and
      `transformers` import (`--hf auto`), Hugging Face's PyTorch `T5ForConditionalGeneration`
      of the same configuration is timed on the same batches in the same run (forward, backward
      and one optimizer step per iteration), alternating with ours in rounds so that a load that
      comes and goes on a shared machine falls on both, and the speed ratio is printed.
      GPU goal configuration: --models t5_small --batch 128 --lengths 512,512 --dtype bfloat16
      --attention cudnn. --attention picks the attention path (T5Config.attention_impl); the
      fused paths (xla, cudnn) run without attention-probability dropout.
  bench gpu …          the prepared accelerator check (synthetic_pretraining.gpu_check; also
                       scripts/gpu_check.sh): both attention paths at the goal size, memory,
                       bf16-vs-fp32 and cuDNN-vs-XLA agreement
  bench generators …   synthetic-task generator throughput (synthetic_pretraining.bench_generators)
  bench pipeline …     input-pipeline throughput (synthetic_pretraining.data.bench_pipeline)

MFU (model FLOPs utilisation) = model FLOPs/s (`model_flops_per_token` × target tokens/s) over the
peak FLOP/s of the devices: a datasheet table for known GPUs/TPUs; on CPU the best rate of a big
jitted matmul measured at the start of the run (so it moves with the machine's load).
torch/transformers are measuring aids only, not dependencies of the project.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

from synthetic_pretraining import environment
from synthetic_pretraining.model import flops

# Subcommands that live in other modules: name → (module, what it measures).
DELEGATES = {
    "gpu": ("synthetic_pretraining.gpu_check",
            "prepared accelerator check: MFU of both attention paths, memory, agreement"),
    "generators": ("synthetic_pretraining.bench_generators",
                   "synthetic-task generator throughput (examples/s)"),
    "pipeline": ("synthetic_pretraining.data.bench_pipeline", "SeqIO input-pipeline throughput"),
}

GPU_GOAL = "--models t5_small --batch 128 --lengths 512,512 --dtype bfloat16 --attention cudnn"

# Dense peak TFLOP/s per device, by a lower-case substring of `device.device_kind` (first match
# wins, so the more specific names come first): (bfloat16, float32).
# TPUs run float32 matmuls as bfloat16 passes at default precision: both columns hold the bf16 peak.
PEAK_TFLOPS: tuple[tuple[str, float, float], ...] = (
    ("h100 pcie", 756.0, 51.0),
    ("h100", 989.0, 67.0),
    ("h200", 989.0, 67.0),
    ("a100", 312.0, 19.5),
    ("tpu v4", 275.0, 275.0),
    ("tpu v5 lite", 197.0, 197.0),
    ("tpu v5e", 197.0, 197.0),
    ("tpu v5p", 459.0, 459.0),
    ("tpu v5", 459.0, 459.0),
)


def usage() -> str:
  lines = ["usage: synthetic-pretraining bench <subcommand> [options]", "", "subcommands:",
           "  train       train-step throughput and MFU of the Flax T5 (vs HF PyTorch where "
           "installed)"]
  lines += [f"  {name:<11} {help_}" for name, (_, help_) in DELEGATES.items()]
  lines += ["", "`synthetic-pretraining bench <subcommand> --help` for its options.",
            f"GPU goal configuration: bench train {GPU_GOAL}"]
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] in ("-h", "--help", "help"):
    print(usage())
    return 0
  name, rest = argv[0], argv[1:]
  if name == "train":
    return run_train_bench(parse_train_args(rest))
  if name in DELEGATES:
    return _delegate(name, rest)
  print(f"unknown bench subcommand {name!r}\n\n{usage()}", file=sys.stderr)
  return 2


def _delegate(name: str, argv: list[str]) -> int:
  module_name = DELEGATES[name][0]
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if e.name != module_name:  # The module exists but one of its own imports is missing.
      raise
    print(f"`bench {name}` is not available: module {module_name} is not installed in this "
          "checkout", file=sys.stderr)
    return 2
  return int(module.main(argv) or 0)


# ------------------------------------------------------------------------------------------------
# Arguments.
def _positive_int(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
  if value <= 0:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
  return value


def _non_negative_int(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected an integer ≥ 0, got {text!r}") from None
  if value < 0:
    raise argparse.ArgumentTypeError(f"expected an integer ≥ 0, got {text!r}")
  return value


def parse_lengths(text: str) -> tuple[int, int]:
  """'128,64' → (128, 64) (inputs, targets); a single number is used for both."""
  parts = [p.strip() for p in text.split(",")]
  try:
    values = [int(p) for p in parts]
  except ValueError:
    values = []
  if len(values) not in (1, 2) or any(v <= 0 for v in values):
    raise argparse.ArgumentTypeError(
        f"expected INPUTS,TARGETS (or one length for both) as positive integers, got {text!r}")
  return (values[0], values[-1])


def parse_models(text: str) -> list[str]:
  """'tiny,t5_small' → ['tiny', 't5_small'], each a preset of `model.t5.PRESETS`."""
  from synthetic_pretraining.model import t5  # pylint: disable=g-import-not-at-top
  names = [n.strip() for n in text.split(",") if n.strip()]
  unknown = [n for n in names if n not in t5.PRESETS]
  if not names or unknown:
    raise argparse.ArgumentTypeError(
        f"unknown model preset(s) {unknown or text!r}; valid presets: {sorted(t5.PRESETS)}")
  return names


def train_arg_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="synthetic-pretraining bench train",
      description=("Train-step throughput and MFU of the Flax T5 (Adafactor, the preset's dropout, "
                   "random tokens), side by side with Hugging Face PyTorch T5 when torch and "
                   "transformers are importable. Defaults are the CPU comparison (batch 8, "
                   f"lengths 128/128); the GPU goal configuration is: {GPU_GOAL}."))
  parser.add_argument("--models", type=parse_models, default=parse_models("tiny,t5_small"),
                      help="comma-separated presets (default: tiny,t5_small)")
  parser.add_argument("--batch", type=_positive_int, default=8, help="global batch size")
  parser.add_argument("--lengths", type=parse_lengths, default=(128, 128),
                      help="INPUTS,TARGETS token lengths (default 128,128)")
  parser.add_argument("--steps", type=_positive_int, default=10,
                      help="timed steps (at least; see --min_time)")
  parser.add_argument("--min_time", type=float, default=3.0,
                      help="keep timing until this many seconds have passed (default 3)")
  parser.add_argument("--warmup", type=_non_negative_int, default=2,
                      help="untimed steps after the compiling first step")
  parser.add_argument("--dtype", choices=("preset", "float32", "bfloat16"), default="preset",
                      help="activation dtype (parameters stay float32); 'preset' keeps the "
                           "preset's own (float32 for tiny and t5_small)")
  parser.add_argument("--attention", choices=("preset", "einsum", "xla", "cudnn"),
                      default="preset",
                      help="attention path (T5Config.attention_impl); 'preset' keeps the "
                           "preset's (einsum). xla/cudnn set attention_dropout_rate=0")
  parser.add_argument("--num_partitions", type=_positive_int, default=1,
                      help="model-parallel partitions of the (data, model) mesh")
  parser.add_argument("--hf", choices=("auto", "off"), default="auto",
                      help="also time HF PyTorch T5 when torch+transformers import (auto)")
  parser.add_argument("--hf_optimizer", choices=("adafactor", "adamw"), default="adafactor",
                      help="optimizer for the HF model: transformers' Adafactor or torch AdamW")
  parser.add_argument("--threads", type=_positive_int, default=None,
                      help="torch threads (default: the CPUs this process may use, as XLA)")
  parser.add_argument("--omp_wait_policy", choices=("passive", "active", "unset"),
                      default="passive",
                      help="OMP_WAIT_POLICY for torch's OpenMP unless exported (default passive: "
                           "spinning OpenMP barriers collapse when other jobs share the CPUs)")
  parser.add_argument("--rounds", type=_positive_int, default=2,
                      help="alternate the implementations in this many timing rounds")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--json", default=None, help="also write the results to this JSON file")
  return parser


def parse_train_args(argv: Sequence[str]) -> argparse.Namespace:
  args = train_arg_parser().parse_args(list(argv))
  if args.min_time < 0:
    train_arg_parser().error(f"--min_time must be ≥ 0, got {args.min_time}")
  return args


# ------------------------------------------------------------------------------------------------
# FLOP accounting.
model_flops_per_token = flops.model_flops_per_token


def peak_flops_per_device(device_kind: str, dtype: str) -> float | None:
  """Datasheet dense peak FLOP/s of one accelerator, or None when the kind is not in the table."""
  kind = device_kind.lower()
  for key, bf16, fp32 in PEAK_TFLOPS:
    if key in kind:
      return (bf16 if dtype == "bfloat16" else fp32) * 1e12
  return None


def measure_cpu_peak_flops(dtype: str, size: int = 2048, repeats: int = 10) -> float:
  """Best FLOP/s of a jitted [size, size] @ [size, size] matmul (the machine, not one device)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
  a = jax.random.normal(key_a, (size, size), dtype)
  b = jax.random.normal(key_b, (size, size), dtype)
  matmul = jax.jit(lambda x, y: x @ y)
  matmul(a, b).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a, b).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2.0 * size**3 / best


# ------------------------------------------------------------------------------------------------
# Timing.
@dataclasses.dataclass
class Result:
  """One timed implementation of one model."""

  model: str
  impl: str
  dtype: str
  params: int
  compile_s: float
  step_times: list[float]
  batch: int
  input_len: int
  target_len: int
  flops_per_token: float
  peak_flops: float | None
  note: str = ""

  @property
  def steps_per_s(self) -> float:
    return len(self.step_times) / sum(self.step_times)

  @property
  def median_step_s(self) -> float:
    return statistics.median(self.step_times)

  @property
  def best_step_s(self) -> float:
    return min(self.step_times)

  @property
  def target_tokens_per_s(self) -> float:
    return self.steps_per_s * self.batch * self.target_len

  @property
  def all_tokens_per_s(self) -> float:
    return self.steps_per_s * self.batch * (self.input_len + self.target_len)

  @property
  def model_flops_per_s(self) -> float:
    return self.target_tokens_per_s * self.flops_per_token

  @property
  def mfu(self) -> float | None:
    return None if not self.peak_flops else self.model_flops_per_s / self.peak_flops

  def as_dict(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    out.update(steps_per_s=self.steps_per_s, median_step_s=self.median_step_s,
               best_step_s=self.best_step_s,
               target_tokens_per_s=self.target_tokens_per_s,
               all_tokens_per_s=self.all_tokens_per_s, model_flops_per_s=self.model_flops_per_s,
               mfu=self.mfu)
    return out


@dataclasses.dataclass
class Stepper:
  """One implementation ready to time: `step(i)` runs training step i and blocks until done."""

  impl: str
  params: int
  note: str
  step: Callable[[int], None]


def time_interleaved(steppers: Sequence[Stepper], steps: int, warmup: int, min_time: float,
                     rounds: int = 1) -> list[tuple[float, list[float]]]:
  """(first-step seconds, timed step seconds) of each stepper, timed in alternating rounds.

  Each stepper first runs its compiling step, then `warmup` steps; then every round runs each
  stepper in turn for ⌈steps / rounds⌉ steps (and at least min_time / rounds seconds), so a load
  that comes and goes on a shared machine falls on all of them alike.
  """
  first = []
  for s in steppers:
    start = time.perf_counter()
    s.step(0)
    first.append(time.perf_counter() - start)
  for s in steppers:
    for i in range(warmup):
      s.step(1 + i)
  per_round, min_round = -(-steps // rounds), min_time / rounds
  times: list[list[float]] = [[] for _ in steppers]
  for _ in range(rounds):
    for s, t in zip(steppers, times):
      spent, done = 0.0, 0
      while done < per_round or spent < min_round:
        start = time.perf_counter()
        s.step(1 + warmup + len(t))
        t.append(time.perf_counter() - start)
        spent, done = spent + t[-1], done + 1
  return list(zip(first, times))


def random_batches(rng: np.random.Generator, count: int, batch: int, input_len: int,
                   target_len: int, vocab_size: int) -> list[dict[str, np.ndarray]]:
  """Batches of random real tokens (ids 2…vocab−1; 0 pads, 1 is EOS), all loss weights 1."""
  out = []
  for _ in range(count):
    inputs = rng.integers(2, vocab_size, (batch, input_len), dtype=np.int32)
    targets = rng.integers(2, vocab_size, (batch, target_len), dtype=np.int32)
    decoder_inputs = np.concatenate([np.zeros((batch, 1), np.int32), targets[:, :-1]], axis=1)
    out.append({"encoder_input_tokens": inputs, "decoder_input_tokens": decoder_inputs,
                "decoder_target_tokens": targets,
                "decoder_loss_weights": np.ones((batch, target_len), np.float32)})
  return out


def prepare_jax(config, batches: list[dict[str, np.ndarray]], args) -> Stepper:
  """`Trainer.train_step` (Adafactor at a constant 0.01, T5X's pre-training warm-up rate)."""
  # pylint: disable=g-import-not-at-top
  import jax
  from synthetic_pretraining.model import t5
  from synthetic_pretraining.train import optim
  from synthetic_pretraining.train import partitioning
  from synthetic_pretraining.train import trainer as trainer_lib
  # pylint: enable=g-import-not-at-top

  mesh = partitioning.create_mesh(args.num_partitions)
  partitioning.check_batch_size(args.batch, mesh)
  trainer = trainer_lib.Trainer(
      config, optim.adafactor(optim.learning_rate_schedule("constant", 0.01)), mesh,
      seed=args.seed)
  holder = {"state": trainer.create_state()}
  device_batches = [trainer.shard_batch(b) for b in batches]

  def step(i: int) -> None:
    state, metrics = trainer.train_step(holder["state"], device_batches[i % len(device_batches)])
    jax.block_until_ready((state, metrics))
    holder["state"] = state

  return Stepper("jax/flax", t5.count_params(holder["state"].params), f"mesh {dict(mesh.shape)}",
                 step)


def hf_available() -> str | None:
  """None when torch and transformers import, else the reason they do not."""
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
    import transformers  # pylint: disable=g-import-not-at-top,unused-import
  except Exception as e:  # pylint: disable=broad-except
    return f"{type(e).__name__}: {e}"
  return None


def hf_feed_forward_proj(mlp_activations: Sequence[str]) -> str:
  """Our MLP activations → HF T5's `feed_forward_proj` ('relu' or 'gated-gelu')."""
  acts = tuple(mlp_activations)
  if acts == ("relu",):
    return "relu"
  if acts == ("gelu", "linear"):
    return "gated-gelu"  # HF's gelu_new is the tanh approximation, as ours.
  raise ValueError(f"no HF T5 feed_forward_proj for mlp_activations {acts}; supported: "
                   "('relu',) and ('gelu', 'linear')")


def hf_config_kwargs(config) -> dict[str, Any]:
  """Keyword arguments of `transformers.T5Config` for the same architecture as `config`."""
  return dict(vocab_size=config.vocab_size, d_model=config.emb_dim, d_kv=config.head_dim,
              d_ff=config.mlp_dim, num_layers=config.num_encoder_layers,
              num_decoder_layers=config.num_decoder_layers, num_heads=config.num_heads,
              relative_attention_num_buckets=config.relpos_num_buckets,
              relative_attention_max_distance=config.relpos_max_distance,
              dropout_rate=config.dropout_rate, layer_norm_epsilon=1e-6,
              feed_forward_proj=hf_feed_forward_proj(config.mlp_activations),
              tie_word_embeddings=config.logits_via_embedding, use_cache=False)


def build_hf_model(config) -> tuple[Any, list[str]]:
  """HF `T5ForConditionalGeneration` of the same architecture as `config`, and notes on it."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  model = transformers.T5ForConditionalGeneration(transformers.T5Config(**hf_config_kwargs(config)))
  notes = []
  lm_head, shared = model.get_output_embeddings(), model.get_input_embeddings()
  if not config.logits_via_embedding and lm_head.weight.data_ptr() == shared.weight.data_ptr():
    # Recent transformers always tie T5's output layer; v1.1 has its own, as `logits_dense`.
    lm_head.weight = torch.nn.Parameter(shared.weight.detach().clone())
    notes.append("lm_head untied by hand")
  return model, notes


def prepare_hf(config, batches: list[dict[str, np.ndarray]], args) -> Stepper:
  """HF PyTorch T5: forward with labels, backward, optimizer step, zero_grad."""
  import contextlib  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  torch.manual_seed(args.seed)
  device = "cuda" if torch.cuda.is_available() else "cpu"
  model, notes = build_hf_model(config)
  notes.insert(0, device)
  model.to(device).train()
  params = sum(p.numel() for p in model.parameters())  # parameters() yields tied ones once.
  if args.hf_optimizer == "adafactor":
    from transformers.optimization import Adafactor  # pylint: disable=g-import-not-at-top
    optimizer = Adafactor(model.parameters(), lr=0.01, relative_step=False,
                          scale_parameter=True, warmup_init=False, clip_threshold=1.0)
    notes.append("transformers Adafactor lr 0.01")
  else:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    notes.append("torch AdamW lr 1e-3")
  dtype = config.dtype
  if dtype == "bfloat16":
    notes.append("autocast bf16")
  torch_batches = [{k: torch.from_numpy(v.astype(np.int64)).to(device)
                    for k, v in b.items() if k != "decoder_loss_weights"} for b in batches]

  def step(i: int) -> None:
    b = torch_batches[i % len(torch_batches)]
    autocast = (torch.autocast(device_type=device, dtype=torch.bfloat16)
                if dtype == "bfloat16" else contextlib.nullcontext())
    with autocast:
      out = model(input_ids=b["encoder_input_tokens"],
                  attention_mask=b["encoder_input_tokens"] > 0,
                  decoder_input_ids=b["decoder_input_tokens"],
                  decoder_attention_mask=b["decoder_input_tokens"] >= 0,
                  labels=b["decoder_target_tokens"])
    out.loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if device == "cuda":
      torch.cuda.synchronize()

  return Stepper("hf/pytorch", params, ", ".join(notes), step)


# ------------------------------------------------------------------------------------------------
# Report.
def _fmt_params(n: int) -> str:
  return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def format_table(results: list[Result]) -> str:
  header = ("model", "impl", "dtype", "params", "first_s", "med_ms", "best_ms", "steps/s",
            "tgt_tok/s", "all_tok/s", "GFLOP/s", "MFU")
  rows = [header]
  for r in results:
    rows.append((r.model, r.impl, r.dtype, _fmt_params(r.params), f"{r.compile_s:.1f}",
                 f"{1e3 * r.median_step_s:.1f}", f"{1e3 * r.best_step_s:.1f}",
                 f"{r.steps_per_s:.3f}", f"{r.target_tokens_per_s:.0f}",
                 f"{r.all_tokens_per_s:.0f}", f"{r.model_flops_per_s / 1e9:.1f}",
                 "n/a" if r.mfu is None else f"{100 * r.mfu:.1f}%"))
  widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
  lines = ["  ".join(cell.rjust(w) if i >= 3 else cell.ljust(w)
                     for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
  lines.insert(1, "-" * len(lines[0]))
  return "\n".join(lines)


def ratios(results: list[Result], statistic: str = "mean") -> dict[str, float]:
  """Per model: our speed over HF's (> 1: ours is faster), from mean, median or best step time."""
  step_s = {"mean": lambda r: 1.0 / r.steps_per_s, "median": lambda r: r.median_step_s,
            "best": lambda r: r.best_step_s}[statistic]
  by_key = {(r.model, r.impl): r for r in results}
  out = {}
  for (model, impl), ours in by_key.items():
    theirs = by_key.get((model, "hf/pytorch"))
    if impl == "jax/flax" and theirs is not None:
      out[model] = step_s(theirs) / step_s(ours)
  return out


def _cpu_count() -> int:
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _load() -> str:
  return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def _environment(hf_ready: bool) -> list[str]:
  import flax  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  devices = jax.devices()
  lines = [f"jax {jax.__version__} (jaxlib {jaxlib.__version__}), flax {flax.__version__}, "
           f"python {platform.python_version()}",
           f"devices: {len(devices)} × {devices[0].platform} '{devices[0].device_kind}' "
           f"({jax.process_count()} process(es)); host CPUs available: {_cpu_count()}; "
           f"load average {_load()}",
           f"XLA_FLAGS={environment.process_value('XLA_FLAGS')!r}"]
  if hf_ready:
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
    lines.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads, "
                 f"OMP_WAIT_POLICY={environment.process_value('OMP_WAIT_POLICY', '(unset)')}), "
                 f"transformers {transformers.__version__}")
  return lines


def run_train_bench(args: argparse.Namespace) -> int:
  """Runs `bench train`; prints progress, the table and the ratios; 0 on success."""
  import jax  # pylint: disable=g-import-not-at-top
  from synthetic_pretraining.model import t5  # pylint: disable=g-import-not-at-top

  if args.hf == "auto" and args.omp_wait_policy != "unset" and "torch" not in sys.modules:
    # Must be set before torch loads its OpenMP runtime; an exported value wins.
    environment.set_default("OMP_WAIT_POLICY", args.omp_wait_policy.upper())
  hf_reason = hf_available() if args.hf == "auto" else "--hf off"
  if hf_reason is None:
    import torch  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(args.threads or _cpu_count())
  print("\n".join(_environment(hf_reason is None)))
  if hf_reason is not None and args.hf == "auto":
    print(f"HF PyTorch comparison skipped: torch/transformers not importable ({hf_reason})")
  device = jax.devices()[0]
  input_len, target_len = args.lengths
  print(f"batch {args.batch}, lengths {input_len}/{target_len}, ≥{args.steps} timed steps "
        f"(≥{args.min_time:g} s) after {args.warmup} warm-up steps, in {args.rounds} "
        "alternating round(s); random tokens")

  peaks: dict[str, tuple[float | None, str]] = {}

  def peak_for(dtype: str) -> float | None:
    if dtype not in peaks:
      if device.platform == "cpu":
        value = measure_cpu_peak_flops(dtype)
        peaks[dtype] = (value, f"measured now: best 2048² {dtype} jitted matmul, whole machine")
      else:
        per_device = peak_flops_per_device(device.device_kind, dtype)
        value = None if per_device is None else per_device * jax.device_count()
        peaks[dtype] = (value, f"datasheet {dtype} dense × {jax.device_count()} devices"
                        if per_device else f"unknown device kind {device.device_kind!r}")
      value, how = peaks[dtype]
      shown = "n/a" if value is None else f"{value / 1e9:.1f} GFLOP/s"
      print(f"peak {dtype}: {shown} ({how})")
    return peaks[dtype][0]

  results: list[Result] = []
  rng = np.random.default_rng(args.seed)
  for name in args.models:
    overrides = {} if args.dtype == "preset" else {"dtype": args.dtype}
    if args.attention != "preset":
      overrides["attention_impl"] = args.attention
      if args.attention != "einsum":
        overrides["attention_dropout_rate"] = 0.0
    config = t5.get_config(name, **overrides)
    batches = random_batches(rng, 2, args.batch, input_len, target_len, config.vocab_size)
    peak = peak_for(config.dtype)
    flops = model_flops_per_token(config, input_len, target_len)
    print(f"[{name}] model FLOPs per target token: {flops:.4g}; attention "
          f"{config.attention_impl} (attention dropout {config.attention_dropout})", flush=True)
    steppers = [prepare_jax(config, batches, args)]
    if hf_reason is None:
      try:
        steppers.append(prepare_hf(config, batches, args))
      except ValueError as e:
        print(f"[{name}] hf/pytorch skipped: {e}")
    timed = time_interleaved(steppers, args.steps, args.warmup, args.min_time, args.rounds)
    for stepper, (first_s, times) in zip(steppers, timed):
      result = Result(name, stepper.impl, config.dtype, stepper.params, first_s, times,
                      args.batch, input_len, target_len, flops, peak, stepper.note)
      results.append(result)
      print(f"[{name}] {stepper.impl}: {result.steps_per_s:.3f} steps/s, median step "
            f"{1e3 * result.median_step_s:.1f} ms, best {1e3 * result.best_step_s:.1f} ms "
            f"({len(times)} steps), first step {first_s:.1f} s, {stepper.params:,} params, "
            f"{stepper.note}", flush=True)

  print()
  print(format_table(results))
  mean, best = ratios(results, "mean"), ratios(results, "best")
  for model, ratio in mean.items():
    print(f"{model}: ours / HF PyTorch speed = {ratio:.2f}× by mean step time, "
          f"{best[model]:.2f}× by best step ({'faster' if ratio >= 1 else 'slower'})")
  print(f"load average at the end: {_load()} (on a shared machine the figures are noisy)")
  if args.json:
    payload = {"environment": _environment(hf_reason is None),
               "args": {k: (list(v) if isinstance(v, tuple) else v)
                        for k, v in vars(args).items()},
               "results": [r.as_dict() for r in results],
               "ratios_mean": mean, "ratios_best": best}
    from synthetic_pretraining.train import checkpoints  # pylint: disable=g-import-not-at-top
    with checkpoints.atomic_output(args.json) as f:
      json.dump(payload, f, indent=1)
  return 0
