"""`bench`: argument parsing, FLOP accounting, peak table, result arithmetic (no timings)."""

import sys
import types

import numpy as np
import pytest

from synthetic_pretraining import bench
from synthetic_pretraining.model import t5


# ---- arguments ---------------------------------------------------------------------------------
def test_train_defaults_are_the_issue_cpu_benchmark():
  args = bench.parse_train_args([])
  assert args.models == ["tiny", "t5_small"]
  assert (args.batch, args.lengths, args.num_partitions) == (8, (128, 128), 1)
  assert (args.dtype, args.hf, args.hf_optimizer) == ("preset", "auto", "adafactor")
  assert (args.rounds, args.omp_wait_policy) == (2, "passive")


def test_train_arguments_are_parsed():
  args = bench.parse_train_args(["--models", "t5_1_1_small", "--batch", "128", "--lengths",
                                 "512,256", "--steps", "3", "--warmup", "0", "--dtype",
                                 "bfloat16", "--hf", "off", "--num_partitions", "2"])
  assert args.models == ["t5_1_1_small"]
  assert (args.batch, args.lengths, args.steps, args.warmup) == (128, (512, 256), 3, 0)
  assert (args.dtype, args.hf, args.num_partitions) == ("bfloat16", "off", 2)


@pytest.mark.parametrize("text,expected", [("128,64", (128, 64)), ("512", (512, 512)),
                                           (" 16 , 8 ", (16, 8))])
def test_parse_lengths(text, expected):
  assert bench.parse_lengths(text) == expected


@pytest.mark.parametrize("argv,message", [
    (["--lengths", "128,abc"], "expected INPUTS,TARGETS"),
    (["--lengths", "1,2,3"], "expected INPUTS,TARGETS"),
    (["--lengths", "0,128"], "expected INPUTS,TARGETS"),
    (["--models", "tiny,t5_large"], "valid presets: ['t5_1_1_small', 't5_small', 'tiny']"),
    (["--batch", "0"], "expected a positive integer, got '0'"),
    (["--warmup", "-1"], "expected an integer ≥ 0, got '-1'"),
    (["--dtype", "float16"], "invalid choice: 'float16'"),
    (["--min_time", "-1"], "--min_time must be ≥ 0"),
])
def test_bad_train_arguments_name_what_was_expected(argv, message, capsys):
  with pytest.raises(SystemExit) as e:
    bench.parse_train_args(argv)
  assert e.value.code == 2
  assert message in capsys.readouterr().err


def test_main_usage_and_unknown_subcommand(capsys):
  assert bench.main([]) == 0
  out = capsys.readouterr().out
  assert "train" in out and "generators" in out and "pipeline" in out
  assert "--batch 128 --lengths 512,512 --dtype bfloat16" in out
  assert bench.main(["bogus"]) == 2
  assert "unknown bench subcommand 'bogus'" in capsys.readouterr().err


def test_delegated_subcommand_gets_the_rest_of_argv(monkeypatch):
  seen = []
  module = types.ModuleType("fake_bench_module")
  module.main = lambda argv: seen.append(argv) or 7
  monkeypatch.setitem(sys.modules, "fake_bench_module", module)
  monkeypatch.setitem(bench.DELEGATES, "generators", ("fake_bench_module", "x"))
  assert bench.main(["generators", "--tasks", "lime", "-n", "5"]) == 7
  assert seen == [["--tasks", "lime", "-n", "5"]]


def test_missing_delegate_module_gives_a_clear_message(monkeypatch, capsys):
  monkeypatch.setitem(bench.DELEGATES, "pipeline", ("synthetic_pretraining.no_such_bench", "x"))
  assert bench.main(["pipeline"]) == 2
  assert "module synthetic_pretraining.no_such_bench is not installed" in capsys.readouterr().err


# ---- FLOP accounting ----------------------------------------------------------------------------
def test_flops_per_token_t5_small_by_hand():
  # d = kv = 512, mlp 2048, vocab 32128, 6 + 6 layers, inputs = targets = 128; MACs per target.
  encoder = 6 * (4 * 512 * 512 + 2 * 512 * 2048)  # q, k, v, out + wi, wo
  decoder = 6 * (8 * 512 * 512 + 2 * 512 * 2048)  # self + cross attention + wi, wo
  logits = 512 * 32128
  attention = 6 * 2 * 128 * 512 + 6 * 2 * (128 + 128) * 512  # QKᵀ and AV, encoder + decoder
  expected = 6 * (encoder + decoder + logits + attention)
  assert expected == 377_094_144
  assert bench.model_flops_per_token(t5.get_config("t5_small"), 128, 128) == expected


def test_flops_per_token_tiny_with_unequal_lengths_by_hand():
  # tiny: d = kv = 64, mlp 256, vocab 384, 2 + 2 layers; 32 input and 16 target tokens per example.
  macs = (2 * 32 * (4 * 64 * 64 + 2 * 64 * 256)  # encoder weights on input tokens
          + 2 * 16 * (6 * 64 * 64 + 2 * 64 * 256)  # decoder weights on target tokens
          + 2 * 32 * (2 * 64 * 64)  # cross-attention keys/values on the encoding
          + 16 * 64 * 384  # logits
          + 2 * 2 * 32 * 32 * 64  # encoder QKᵀ, AV
          + 2 * 2 * (16 * 16 + 16 * 32) * 64)  # decoder self and cross QKᵀ, AV
  assert bench.model_flops_per_token(t5.get_config("tiny"), 32, 16) == 6 * macs / 16
  assert 6 * macs / 16 == 2_383_872


@pytest.mark.parametrize("name", ["tiny", "t5_small", "t5_1_1_small"])
def test_flops_without_attention_are_six_times_the_matmul_parameters(name):
  # Equal lengths: every weight matrix is applied once per token, so FLOPs/token − attention =
  # 6 × (parameters − layer norms − relative position tables − an untied input embedding, which is
  # only looked up; a tied one is the output layer).
  config = t5.get_config(name)
  length = 64
  flat = t5.flatten_names(t5.params_shapes(config))
  lookup_only = set() if config.logits_via_embedding else {"token_embedder/embedding"}
  matmul_params = sum(int(np.prod(leaf.shape)) for key, leaf in flat.items()
                      if not key.endswith("/scale") and not key.endswith("rel_embedding")
                      and key not in lookup_only)
  kv = config.num_heads * config.head_dim
  attention = 6 * (config.num_encoder_layers * 2 * length * kv +
                   config.num_decoder_layers * 4 * length * kv)
  flops = bench.model_flops_per_token(config, length, length)
  assert flops - attention == 6 * matmul_params


# ---- peaks, results ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,dtype,tflops", [
    ("NVIDIA H100 80GB HBM3", "bfloat16", 989), ("NVIDIA H100 80GB HBM3", "float32", 67),
    ("NVIDIA H100 PCIe", "bfloat16", 756), ("NVIDIA H200", "bfloat16", 989),
    ("NVIDIA A100-SXM4-40GB", "bfloat16", 312), ("NVIDIA A100-SXM4-80GB", "float32", 19.5),
    ("TPU v4", "bfloat16", 275), ("TPU v5 lite", "bfloat16", 197), ("TPU v5", "float32", 459),
    ("TPU v5p", "bfloat16", 459),
])
def test_peak_table(kind, dtype, tflops):
  assert bench.peak_flops_per_device(kind, dtype) == pytest.approx(tflops * 1e12)


def test_unknown_device_has_no_peak():
  assert bench.peak_flops_per_device("cpu", "float32") is None
  assert bench.peak_flops_per_device("Tesla T4", "bfloat16") is None


def _result(impl, step_times, peak=1e12):
  return bench.Result("t5_small", impl, "float32", 10, 1.0, step_times, batch=8, input_len=128,
                      target_len=64, flops_per_token=1e6, peak_flops=peak)


def test_result_throughput_and_mfu_arithmetic():
  r = _result("jax/flax", [0.5, 0.25, 0.25])
  assert r.steps_per_s == pytest.approx(3.0)
  assert r.median_step_s == pytest.approx(0.25)
  assert r.target_tokens_per_s == pytest.approx(3.0 * 8 * 64)
  assert r.all_tokens_per_s == pytest.approx(3.0 * 8 * 192)
  assert r.model_flops_per_s == pytest.approx(3.0 * 8 * 64 * 1e6)
  assert r.mfu == pytest.approx(3.0 * 8 * 64 * 1e6 / 1e12)
  assert _result("jax/flax", [1.0], peak=None).mfu is None
  assert r.best_step_s == pytest.approx(0.25)
  table = bench.format_table([r])
  assert "t5_small" in table and "0.2%" in table


def test_ratio_is_ours_over_hf():
  ours, theirs = _result("jax/flax", [0.5, 0.5, 2.0]), _result("hf/pytorch", [1.0, 1.0, 1.0])
  assert bench.ratios([ours, theirs]) == {"t5_small": pytest.approx(1.0)}  # mean step 1 s vs 1 s
  assert bench.ratios([ours, theirs], "median") == {"t5_small": pytest.approx(2.0)}
  assert bench.ratios([ours, theirs], "best") == {"t5_small": pytest.approx(2.0)}
  assert bench.ratios([ours]) == {}


def test_time_interleaved_compiles_warms_up_then_alternates_rounds():
  calls = []
  steppers = [bench.Stepper(impl, 1, "", lambda i, impl=impl: calls.append((impl, i)))
              for impl in ("a", "b")]
  timed = bench.time_interleaved(steppers, steps=4, warmup=1, min_time=0.0, rounds=2)
  assert calls == [("a", 0), ("b", 0), ("a", 1), ("b", 1),  # first (compiling) steps, warm-up
                   ("a", 2), ("a", 3), ("b", 2), ("b", 3),  # round 1
                   ("a", 4), ("a", 5), ("b", 4), ("b", 5)]  # round 2
  assert [len(times) for _, times in timed] == [4, 4]


def test_random_batches_have_real_tokens_and_shifted_decoder_inputs():
  (b,) = bench.random_batches(np.random.default_rng(0), 1, batch=4, input_len=8, target_len=6,
                              vocab_size=50)
  assert b["encoder_input_tokens"].shape == (4, 8) and b["decoder_target_tokens"].shape == (4, 6)
  assert b["encoder_input_tokens"].min() >= 2 and b["decoder_target_tokens"].max() < 50
  np.testing.assert_array_equal(b["decoder_input_tokens"][:, 1:],
                                b["decoder_target_tokens"][:, :-1])
  assert (b["decoder_input_tokens"][:, 0] == 0).all()


# ---- the HF side's configuration ---------------------------------------------------------------
def test_hf_config_mapping():
  small = bench.hf_config_kwargs(t5.get_config("t5_small"))
  assert small["feed_forward_proj"] == "relu" and small["tie_word_embeddings"] is True
  assert (small["d_model"], small["d_kv"], small["d_ff"], small["num_heads"]) == (512, 64, 2048, 8)
  assert (small["relative_attention_num_buckets"],
          small["relative_attention_max_distance"]) == (32, 128)
  v11 = bench.hf_config_kwargs(t5.get_config("t5_1_1_small"))
  assert v11["feed_forward_proj"] == "gated-gelu" and v11["tie_word_embeddings"] is False
  assert (v11["num_layers"], v11["num_decoder_layers"], v11["d_ff"]) == (8, 8, 1024)
  with pytest.raises(ValueError, match="no HF T5 feed_forward_proj"):
    bench.hf_feed_forward_proj(("silu",))


@pytest.mark.parametrize("overrides", [{}, {"mlp_activations": ("gelu", "linear"),
                                            "logits_via_embedding": False}])
def test_hf_model_has_our_parameter_count(overrides):
  pytest.importorskip("torch", reason="torch is a measuring aid, not a project dependency")
  pytest.importorskip("transformers", reason="transformers is a measuring aid only")
  config = t5.get_config("tiny", **overrides)
  model, _ = bench.build_hf_model(config)
  assert sum(p.numel() for p in model.parameters()) == t5.count_params(t5.params_shapes(config))


# ---- attention path and the prepared GPU check ------------------------------------------------
def test_attention_argument():
  assert bench.parse_train_args([]).attention == "preset"
  assert bench.parse_train_args(["--attention", "cudnn"]).attention == "cudnn"
  assert "--attention cudnn" in bench.GPU_GOAL


def test_gpu_subcommand_is_the_gpu_check():
  assert bench.DELEGATES["gpu"][0] == "synthetic_pretraining.gpu_check"


def test_gpu_check_variants_are_parsed():
  from synthetic_pretraining import gpu_check  # pylint: disable=import-outside-toplevel
  args = gpu_check.parse_args(["--variants", "cudnn:chunk=0:logits=bf16, xla:prng=rbg:dropout=0"])
  assert args.variants == [{"impl": "cudnn", "chunk": 0, "logits": "bf16"},
                           {"impl": "xla", "prng": "rbg", "dropout": 0.0}]
  assert (args.model, args.batch, args.lengths) == ("t5_small", 128, (512, 512))
  assert gpu_check.parse_args(["--smoke"]).model == "tiny"


@pytest.mark.parametrize("argv,message", [
    (["--variants", "flash"], "unknown attention path 'flash'"),
    (["--variants", "xla:chunk=x"], "bad option 'chunk=x'"),
    (["--variants", "xla:speed=2"], "bad option 'speed=2'"),
    (["--impls", "cudnn,flash"], "unknown attention path(s) ['flash']"),
])
def test_gpu_check_bad_arguments(argv, message, capsys):
  from synthetic_pretraining import gpu_check  # pylint: disable=import-outside-toplevel
  with pytest.raises(SystemExit):
    gpu_check.parse_args(argv)
  assert message in capsys.readouterr().err


def test_dot_general_dtypes_of_stablehlo_text():
  from synthetic_pretraining import gpu_check  # pylint: disable=import-outside-toplevel
  text = ("%0 = stablehlo.dot_general %a, %b, contracting_dims = [1] x [0] : "
          "(tensor<4x8xbf16>, tensor<8x2xbf16>) -> tensor<4x2xbf16>\n"
          "%1 = stablehlo.dot_general %a, %b, contracting_dims = [1] x [0], "
          "precision = [DEFAULT, DEFAULT] : (tensor<4x8xbf16>, tensor<8x2xbf16>) -> "
          "tensor<4x2xf32>\n"
          "%2 = stablehlo.dot_general %c, %d, batching_dims = [0] x [0] : "
          "(tensor<3x4x8xf32>, tensor<3x8xf32>) -> tensor<3x4xf32>\n")
  assert gpu_check.dot_general_dtypes(text) == {"bf16": 1, "f32": 2}
  with pytest.raises(ValueError, match="parsed 0 of 1 dot_general"):
    gpu_check.dot_general_dtypes("stablehlo.dot_general %a, %b\n")


def test_training_step_imports_no_tensorflow_seqio_or_orbax():
  """The device check must run on a machine with jax/flax/optax/numpy/gin only."""
  import subprocess  # pylint: disable=import-outside-toplevel
  code = ("import sys; import synthetic_pretraining.gpu_check, synthetic_pretraining.bench; "
          "import synthetic_pretraining.train.trainer; "
          "print(sorted(m for m in sys.modules if m.split('.')[0] in "
          "('tensorflow', 'seqio', 'orbax', 'tensorflow_datasets', 't5', 'torch')))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[]"


def test_gpu_check_smoke_runs_to_completion_on_cpu(tmp_path, capsys):
  """The prepared device check at its --smoke size: every stage runs and its checks pass."""
  import json  # pylint: disable=import-outside-toplevel
  from synthetic_pretraining import gpu_check  # pylint: disable=import-outside-toplevel
  out_json = tmp_path / "check.json"
  assert gpu_check.main(["--smoke", "--impls", "cudnn,xla", "--steps", "1", "--warmup", "0",
                         "--devices", "1", "--json", str(out_json)]) == 0
  text = capsys.readouterr().out
  assert "cudnn skipped: no GPU" in text and "bf16 vs float32" in text
  assert gpu_check.main(["--smoke", "--batch", "3", "--devices", "2"]) == 2
  assert "--batch 3 is not divisible by the 2 devices" in capsys.readouterr().err
  result = json.loads(out_json.read_text())
  assert [r["impl"] for r in result["rows"]] == ["xla"]
  row = result["rows"][0]
  assert row["steps_per_s"] > 0 and row["memory"]["temp_size_in_bytes"] > 0
  assert row["dot_general_dtypes"]["bf16"] > row["dot_general_dtypes"]["f32"]
  assert result["bf16_vs_fp32"]["ok"] and result["gradient_agreement"]["ok"]
  assert result["gradient_agreement"]["pair"] == ["xla", "einsum"]
  assert result["leaked_modules"] == []
