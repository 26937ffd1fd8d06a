"""Hugging Face interop against transformers' own T5 (torch, CPU): export, import, both versions.

The reference is `transformers.T5ForConditionalGeneration` loading the exported folder (or a model
the test builds and saves with transformers itself); logits are compared on a padded batch at
the real target positions, greedy decoding token by token.
"""

import dataclasses
import json
import os

import jax
import ml_dtypes
import numpy as np
import pytest
import seqio
from safetensors.numpy import load_file, save_file

from synthetic_pretraining import param_tree
from synthetic_pretraining.interop import hf
from synthetic_pretraining.model import t5
from synthetic_pretraining.train import checkpoints
from tests.conftest import require_module

torch = require_module("torch")
transformers = require_module("transformers")
torch.set_num_threads(1)

# Non-square everywhere (d_model 24, heads·d_kv 32, d_ff 40; 2 encoder / 3 decoder layers) so a
# missed transpose or a swapped stack fails; 16 buckets up to distance 24 with inputs of length 30
# so the log-spaced and the saturated buckets are both used.
V10 = t5.T5Config(vocab_size=96, emb_dim=24, num_heads=4, num_encoder_layers=2,
                  num_decoder_layers=3, head_dim=8, mlp_dim=40, mlp_activations=("relu",),
                  dropout_rate=0.0, logits_via_embedding=True, relpos_num_buckets=16,
                  relpos_max_distance=24)
V11 = dataclasses.replace(V10, mlp_activations=("gelu", "linear"), logits_via_embedding=False)
CONFIGS = {"v1.0": V10, "v1.1": V11}


def random_params(config: t5.T5Config, seed: int) -> dict:
  """The model's own initialisation, with layer-norm scales moved away from 1 (so a misplaced
  norm shows)."""
  flat = param_tree.flatten(jax.device_get(t5.init_params(config, seed)))
  rng = np.random.default_rng(seed)
  for name, value in flat.items():
    value = np.asarray(value, np.float32)
    if name.endswith("/scale"):
      value = value + 0.3 * rng.standard_normal(value.shape).astype(np.float32)
    flat[name] = value
  return param_tree.unflatten(flat)


def padded_batch(vocab_size: int, seed: int = 0):
  """Encoder inputs [3, 30] and decoder targets [3, 12], each row 0-padded after its length."""
  rng = np.random.default_rng(seed)
  enc = np.zeros((3, 30), np.int32)
  tgt = np.zeros((3, 12), np.int32)
  for row, (n_in, n_out) in enumerate([(30, 12), (17, 7), (5, 3)]):
    enc[row, :n_in] = rng.integers(2, vocab_size, n_in)
    tgt[row, :n_out] = rng.integers(2, vocab_size, n_out)
  dec_in = np.concatenate([np.zeros((3, 1), np.int32), tgt[:, :-1]], axis=1)
  return enc, dec_in, tgt


def our_logits(config, params, enc, dec_in, tgt) -> np.ndarray:
  return np.asarray(t5.Transformer(config).apply({"params": params}, enc, dec_in, tgt))


def hf_logits(model, enc, dec_in, tgt) -> np.ndarray:
  with torch.no_grad():
    out = model(input_ids=torch.tensor(enc, dtype=torch.long),
                attention_mask=torch.tensor(enc > 0, dtype=torch.long),
                decoder_input_ids=torch.tensor(dec_in, dtype=torch.long),
                decoder_attention_mask=torch.tensor(tgt > 0, dtype=torch.long))
  return out.logits.float().numpy()


def max_diff_at_targets(a, b, tgt) -> float:
  assert a.shape == b.shape
  return float(np.abs(a - b)[tgt > 0].max())


def load_hf_model(path):
  return transformers.T5ForConditionalGeneration.from_pretrained(str(path)).eval()


def greedy_both(config, params, model, enc, steps: int, use_cache: bool = True):
  """([batch, steps] greedy tokens of our decoder, of transformers' generate), 0 after EOS."""
  from synthetic_pretraining.train import decoding  # pylint: disable=g-import-not-at-top
  ours = np.asarray(decoding.greedy_decode(t5.Transformer(config), params, enc, steps))
  with torch.no_grad():
    generated = model.generate(input_ids=torch.tensor(enc, dtype=torch.long),
                               attention_mask=torch.tensor(enc > 0, dtype=torch.long),
                               max_new_tokens=steps, do_sample=False, num_beams=1,
                               use_cache=use_cache).numpy()
  assert (generated[:, 0] == 0).all()  # the decoder start token
  theirs = np.zeros_like(ours)
  theirs[:, :generated.shape[1] - 1] = generated[:, 1:]
  return ours, theirs


def flat_equal(a, b) -> bool:
  fa, fb = param_tree.flatten(a), param_tree.flatten(b)
  return fa.keys() == fb.keys() and all(np.array_equal(np.asarray(fa[k]), np.asarray(fb[k]))
                                        for k in fa)


# ---------------------------------------------------------------------------------------------
# Export: our model -> transformers.


@pytest.mark.parametrize("version", ["v1.0", "v1.1"])
def test_export_loads_in_transformers_with_the_same_logits_and_greedy_tokens(tmp_path, version):
  config = CONFIGS[version]
  params = random_params(config, seed=1)
  hf.export_params(params, config, tmp_path / "hf")
  written = json.loads((tmp_path / "hf" / "config.json").read_text())
  assert written["tie_word_embeddings"] is (version == "v1.0")
  assert written["feed_forward_proj"] == ("relu" if version == "v1.0" else "gated-gelu")
  model = load_hf_model(tmp_path / "hf")
  assert model.config.d_model == 24 and model.config.num_decoder_layers == 3
  assert model.config.relative_attention_max_distance == 24
  # HF's output scaling is what makes the tied v1.0 head equal to ours (logits / sqrt(d_model)).
  assert model.config.scale_decoder_outputs is (version == "v1.0")

  enc, dec_in, tgt = padded_batch(config.vocab_size)
  ours = our_logits(config, params, enc, dec_in, tgt)
  theirs = hf_logits(model, enc, dec_in, tgt)
  assert max_diff_at_targets(ours, theirs, tgt) <= 1e-4
  assert np.abs(ours[tgt > 0]).max() > 1.0  # not a trivially small comparison

  # transformers 5.25 sizes generate()'s KV cache by the encoder's layer count, which fails for a
  # deeper decoder (IndexError); without the cache it decodes the same tokens, only slower.
  our_tokens, theirs_tokens = greedy_both(config, params, model, enc, steps=10, use_cache=False)
  np.testing.assert_array_equal(our_tokens, theirs_tokens)
  assert len(np.unique(our_tokens)) >= 2  # not one token everywhere


@pytest.mark.parametrize("version", ["v1.0", "v1.1"])
def test_export_then_import_is_bit_identical(tmp_path, version):
  config = CONFIGS[version]
  params = random_params(config, seed=2)
  hf.export_params(params, config, tmp_path / "f32")
  imported, imported_config = hf.load_hf(tmp_path / "f32")
  assert imported_config == config
  assert flat_equal(imported, params)
  # The checkpoint resolver used by training, `stats` and the statistics initialisations.
  assert flat_equal(checkpoints.load_params(str(tmp_path / "f32")), params)


def test_bfloat16_export_rounds_once_and_round_trips(tmp_path):
  params = random_params(V11, seed=3)
  hf.export_params(params, V11, tmp_path / "bf16", dtype="bfloat16")
  stored = load_file(str(tmp_path / "bf16" / "model.safetensors"))
  assert {v.dtype for v in stored.values()} == {np.dtype(ml_dtypes.bfloat16)}
  assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"
  imported, _ = hf.load_hf(tmp_path / "bf16")
  rounded = {k: np.asarray(v).astype(ml_dtypes.bfloat16).astype(np.float32)
             for k, v in param_tree.flatten(params).items()}
  assert flat_equal(imported, param_tree.unflatten(rounded))
  # A bfloat16 checkpoint exported again in bfloat16 gives the same bytes.
  hf.export_params(imported, V11, tmp_path / "again", dtype="bfloat16")
  again = load_file(str(tmp_path / "again" / "model.safetensors"))
  assert again.keys() == stored.keys()
  assert all(again[k].tobytes() == stored[k].tobytes() for k in stored)
  # transformers reads the bfloat16 weights; in float32 they give our logits of the same weights.
  model = transformers.T5ForConditionalGeneration.from_pretrained(
      str(tmp_path / "bf16"), dtype=torch.bfloat16).eval()
  assert model.shared.weight.dtype == torch.bfloat16
  enc, dec_in, tgt = padded_batch(V11.vocab_size, seed=4)
  assert max_diff_at_targets(our_logits(V11, imported, enc, dec_in, tgt),
                             hf_logits(model.float(), enc, dec_in, tgt), tgt) <= 1e-4


def test_bfloat16_t5x_checkpoint_exports_by_its_shapes(tmp_path, capsys):
  """A legacy T5X checkpoint (msgpack, bfloat16 arrays inline, no run_info.json): the command
  infers the configuration from the shapes (T5's gated GELU, max distance 128)."""
  from flax import serialization  # pylint: disable=g-import-not-at-top
  from synthetic_pretraining import cli  # pylint: disable=g-import-not-at-top
  config = dataclasses.replace(V11, relpos_num_buckets=32, relpos_max_distance=128)
  bf16 = {k: np.asarray(v).astype(ml_dtypes.bfloat16)
          for k, v in param_tree.flatten(random_params(config, seed=12)).items()}
  step_dir = tmp_path / "t5x" / "checkpoint_100"
  step_dir.mkdir(parents=True)
  (step_dir / "checkpoint").write_bytes(serialization.msgpack_serialize(
      {"version": 3, "optimizer": {"target": param_tree.unflatten(bf16),
                                   "state": {"step": np.asarray(100)}}}))
  assert cli.main(["export", "--to", "hf", str(tmp_path / "t5x"), str(tmp_path / "hf")]) == 0
  assert "config from parameter shapes" in capsys.readouterr().out
  model = load_hf_model(tmp_path / "hf")
  assert model.config.feed_forward_proj == "gated-gelu" and not model.config.scale_decoder_outputs
  params = param_tree.unflatten({k: v.astype(np.float32) for k, v in bf16.items()})
  enc, dec_in, tgt = padded_batch(config.vocab_size, seed=13)
  assert max_diff_at_targets(our_logits(config, params, enc, dec_in, tgt),
                             hf_logits(model, enc, dec_in, tgt), tgt) <= 1e-4


# ---------------------------------------------------------------------------------------------
# Import: a model transformers built and saved -> our model.


def make_hf_model(kind: str, seed: int, feed_forward_proj: str | None = None):
  """A tiny transformers T5: 'v1.0' (relu, tied, scaled), 'v1.1' (gated-gelu with an untied
  lm_head, as google/t5-v1_1-* checkpoints), 'v1.1-tied' (what transformers 5 builds for
  tie_word_embeddings=False: an unscaled head tied to `shared`)."""
  torch.manual_seed(seed)
  cfg = transformers.T5Config(
      vocab_size=96, d_model=24, d_kv=8, d_ff=40, num_layers=2, num_decoder_layers=3, num_heads=4,
      relative_attention_num_buckets=16, relative_attention_max_distance=24, dropout_rate=0.0,
      feed_forward_proj=feed_forward_proj or ("relu" if kind == "v1.0" else "gated-gelu"),
      tie_word_embeddings=kind == "v1.0", decoder_start_token_id=0)
  model = transformers.T5ForConditionalGeneration(cfg).eval()
  with torch.no_grad():
    for p in model.parameters():  # HF initialises layer norms to 1: move every weight (at
      p.mul_(1 + 0.2 * torch.randn_like(p))  # HF's own scale, so float32 stays well conditioned)
  if kind == "v1.1":
    model.lm_head.weight = torch.nn.Parameter(0.3 * torch.randn(96, 24))
  return model


@pytest.mark.parametrize("kind", ["v1.0", "v1.1", "v1.1-tied"])
def test_model_saved_by_transformers_imports_with_its_logits(tmp_path, kind):
  model = make_hf_model(kind, seed=5)
  model.save_pretrained(str(tmp_path / "saved"))
  params, config = hf.load_hf(tmp_path / "saved")
  assert config.logits_via_embedding is (kind == "v1.0")
  assert config.mlp_activations == (("relu",) if kind == "v1.0" else ("gelu", "linear"))
  assert (config.num_encoder_layers, config.num_decoder_layers) == (2, 3)
  enc, dec_in, tgt = padded_batch(96, seed=6)
  assert max_diff_at_targets(our_logits(config, params, enc, dec_in, tgt),
                             hf_logits(model, enc, dec_in, tgt), tgt) <= 1e-4
  if kind == "v1.1":
    np.testing.assert_array_equal(params["decoder"]["logits_dense"]["kernel"],
                                  model.lm_head.weight.detach().numpy().T)


@pytest.mark.parametrize("proj, activations", [("gated-silu", ("silu", "linear")),
                                               ("gated-relu", ("relu", "linear")),
                                               ("gelu_new", ("gelu",))])
def test_other_supported_feed_forward_projections(tmp_path, proj, activations):
  model = make_hf_model("v1.1", seed=14, feed_forward_proj=proj)
  model.save_pretrained(str(tmp_path / "saved"))
  params, config = hf.load_hf(tmp_path / "saved")
  assert config.mlp_activations == activations
  enc, dec_in, tgt = padded_batch(96, seed=15)
  assert max_diff_at_targets(our_logits(config, params, enc, dec_in, tgt),
                             hf_logits(model, enc, dec_in, tgt), tgt) <= 1e-4
  hf.export_params(params, config, tmp_path / "back")  # and back, under the same name
  assert json.loads((tmp_path / "back" / "config.json").read_text())["feed_forward_proj"] == proj


def test_pytorch_model_bin_and_bfloat16_import(tmp_path):
  model = make_hf_model("v1.0", seed=7)
  folder = tmp_path / "bin"
  model.config.save_pretrained(str(folder))
  # A torch state dict holds the tied copies too (lm_head, {encoder,decoder}.embed_tokens).
  state = model.state_dict()
  assert "lm_head.weight" in state and "encoder.embed_tokens.weight" in state
  torch.save(state, folder / "pytorch_model.bin")
  params, config = hf.load_hf(folder)
  enc, dec_in, tgt = padded_batch(96, seed=8)
  assert max_diff_at_targets(our_logits(config, params, enc, dec_in, tgt),
                             hf_logits(model, enc, dec_in, tgt), tgt) <= 1e-4

  bf16 = make_hf_model("v1.1", seed=9).to(torch.bfloat16)
  bf16.save_pretrained(str(tmp_path / "bf16"))
  assert load_file(str(tmp_path / "bf16" / "model.safetensors"))["shared.weight"].dtype == \
      np.dtype(ml_dtypes.bfloat16)
  params, config = hf.load_hf(tmp_path / "bf16")
  np.testing.assert_array_equal(params["token_embedder"]["embedding"],
                                bf16.shared.weight.detach().float().numpy())
  assert max_diff_at_targets(our_logits(config, params, enc, dec_in, tgt),
                             hf_logits(bf16.float(), enc, dec_in, tgt), tgt) <= 1e-4


def test_sharded_safetensors_import(tmp_path):
  params = random_params(V10, seed=10)
  hf.export_params(params, V10, tmp_path / "one")
  tensors = load_file(str(tmp_path / "one" / "model.safetensors"))
  folder = tmp_path / "sharded"
  folder.mkdir()
  (folder / "config.json").write_text((tmp_path / "one" / "config.json").read_text())
  names = sorted(tensors)
  shards = {"model-00001-of-00002.safetensors": names[::2],
            "model-00002-of-00002.safetensors": names[1::2]}
  for file, subset in shards.items():
    save_file({n: tensors[n] for n in subset}, str(folder / file))
  (folder / "model.safetensors.index.json").write_text(json.dumps(
      {"weight_map": {n: f for f, subset in shards.items() for n in subset}}))
  assert flat_equal(hf.load_hf_params(folder), params)


def test_hf_folder_feeds_weight_transfer_and_statistics(tmp_path):
  """The paths that take INITIAL_CHECKPOINT_PATH / statistics_checkpoint / `stats` CKPT."""
  from synthetic_pretraining.train import init_stats, param_stats, transfer  # pylint: disable=g-import-not-at-top
  model = make_hf_model("v1.0", seed=11)
  model.save_pretrained(str(tmp_path / "hf"))
  source = checkpoints.load_params(str(tmp_path / "hf"))
  fresh = jax.device_get(t5.init_params(V10, 0))
  transferred = transfer.transfer_weights(fresh, source, "all")
  np.testing.assert_array_equal(
      transferred["encoder"]["layers_1"]["attention"]["query"]["kernel"],
      model.encoder.block[1].layer[0].SelfAttention.q.weight.detach().numpy().T)
  assert flat_equal(init_stats.load_param_tree(str(tmp_path / "hf")), source)
  # The gin entry point of weight transfer takes the HF folder too.
  via_gin_entry = transfer.initial_params_from_checkpoint(fresh, str(tmp_path / "hf"), mode="all")
  assert flat_equal(via_gin_entry, transferred)
  with pytest.raises(ValueError, match="Hugging Face folder"):
    transfer.initial_params_from_checkpoint(fresh, str(tmp_path / "hf"), step=3, mode="all")
  report = param_stats.build_report(str(tmp_path / "hf"))
  wo = model.decoder.block[2].layer[2].DenseReluDense.wo.weight.detach().numpy().astype(np.float64)
  entry = next(r for r in report["parameters"] if r["name"] == "decoder/layers_2/mlp/wo/kernel")
  assert entry["mean"] == pytest.approx(wo.mean(), rel=1e-6)
  assert entry["std"] == pytest.approx(wo.std(), rel=1e-6)


# ---------------------------------------------------------------------------------------------
# A trained checkpoint, exported by the command, scores the same in transformers.


def test_trained_checkpoint_scores_the_same_teacher_forced_accuracy(tmp_path, capsys):
  import gin  # pylint: disable=g-import-not-at-top
  from synthetic_pretraining import cli  # pylint: disable=g-import-not-at-top
  from synthetic_pretraining.train import data_input, loop, metrics_io, optim  # pylint: disable=g-import-not-at-top
  from synthetic_pretraining.train import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  lengths = {"inputs": 12, "targets": 12}
  run = tmp_path / "run"
  loop.train(model_dir=str(run), model_config=t5.get_config("tiny"),
             dataset=loop.DatasetConfig("toy_copy", lengths, 16, module="tests.train.toy_tasks"),
             train_steps=60, learning_rate_fn=optim.learning_rate_schedule("constant", 0.05),
             evaluation=loop.EvalConfig(period=60, steps=4),
             checkpointing=loop.CheckpointConfig(period=60), log_period=60,
             loss=trainer_lib.LossConfig(z_loss=0.0))
  evals = [r for r in metrics_io.read(str(run)) if r["group"] == "training_eval"]
  assert evals and evals[-1]["step"] == 60
  ours = evals[-1]

  assert cli.main(["export", "--to", "hf", str(run), str(tmp_path / "hf"), "--vocab", "byte"]) == 0
  assert "run_info.json" in capsys.readouterr().out  # the run's own model config was used
  # A step directory of the run gives the same folder.
  assert cli.main(["export", "--to", "hf", str(run / "checkpoints" / "60"),
                   str(tmp_path / "step")]) == 0
  assert (tmp_path / "step" / "model.safetensors").read_bytes() == \
      (tmp_path / "hf" / "model.safetensors").read_bytes()
  model = load_hf_model(tmp_path / "hf")
  batches = list(data_input.get_dataset("toy_copy", lengths, "validation", 16, shuffle=False,
                                        seed=42, pack=False, num_epochs=1)
                 .take(4).as_numpy_iterator())
  correct = tokens = 0
  for batch in batches:
    tgt = batch["decoder_target_tokens"]
    logits = hf_logits(model, batch["encoder_input_tokens"], batch["decoder_input_tokens"], tgt)
    weights = batch["decoder_loss_weights"] > 0
    correct += int(((logits.argmax(-1) == tgt) & weights).sum())
    tokens += int(weights.sum())
  assert tokens == ours["num_tokens"]
  assert 0.2 < ours["accuracy"] < 1.0  # it learnt something, and not everything
  print(f"teacher-forced token accuracy: ours {ours['accuracy']:.6f}, transformers "
        f"{correct / tokens:.6f} ({tokens} tokens)")
  assert correct / tokens == pytest.approx(ours["accuracy"], abs=1e-9)
  # Greedy decoding (transformers with its KV cache) gives our decoder's tokens.
  params = checkpoints.load_params(str(run))
  our_tokens, theirs_tokens = greedy_both(t5.get_config("tiny"), params, model,
                                          batches[0]["encoder_input_tokens"], steps=12)
  np.testing.assert_array_equal(our_tokens, theirs_tokens)
  assert (our_tokens == 1).any(axis=1).sum() >= 2  # rows that stop at EOS are compared too

  # The byte tokenizer written beside it gives seqio's ids for text, so the model runs on text.
  tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
  vocabulary = seqio.ByteVocabulary(extra_ids=100)
  ids = tokenizer("copy: déjà", return_tensors="pt").input_ids
  assert ids[0].tolist() == list(vocabulary.encode("copy: déjà")) + [1]


# ---------------------------------------------------------------------------------------------
# Tokenizers.


def test_byt5_tokenizer_config_matches_seqio_byte_vocabulary(tmp_path):
  hf.export_params(random_params(dataclasses.replace(V10, vocab_size=384), 0),
                   dataclasses.replace(V10, vocab_size=384), tmp_path / "hf", vocab="byte")
  tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
  assert type(tokenizer).__name__ == "ByT5Tokenizer"
  vocabulary = seqio.ByteVocabulary(extra_ids=100)
  assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
  assert (vocabulary.pad_id, vocabulary.eos_id, vocabulary.unk_id) == (0, 1, 2)
  for text in ["hello", "naïve café — 東京", "a\tb\n", ""]:
    assert tokenizer(text).input_ids == list(vocabulary.encode(text)) + [1], text
    assert tokenizer.decode(vocabulary.encode(text)) == text
  # T5's sentinel rule (t5.data.preprocessors: sentinel k = vocab_size - 1 - k), which seqio's
  # ByteVocabulary of 100 extra ids follows; plain ByT5Tokenizer(extra_ids=100) numbers upwards.
  for k in range(100):
    assert tokenizer.convert_tokens_to_ids(f"<extra_id_{k}>") == vocabulary.vocab_size - 1 - k
  assert transformers.ByT5Tokenizer(extra_ids=100).convert_tokens_to_ids("<extra_id_0>") == 259


def test_sentencepiece_tokenizer_written_for_a_local_model(tmp_path):
  model_file = os.path.join(os.path.dirname(seqio.__file__), "test_data", "sentencepiece",
                            "sentencepiece.model")
  if not os.path.isfile(model_file):
    pytest.skip(f"seqio's test SentencePiece model is not installed ({model_file})")
  vocabulary = seqio.SentencePieceVocabulary(model_file, extra_ids=100)
  config = dataclasses.replace(V10, vocab_size=128)
  hf.export_params(random_params(config, 0), config, tmp_path / "hf", vocab=model_file)
  assert (tmp_path / "hf" / "spiece.model").read_bytes() == open(model_file, "rb").read()
  tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
  for text in ["this is a test", "ab cd"]:
    assert tokenizer(text).input_ids == list(vocabulary.encode(text)) + [1], text
  for k in (0, 1, 99):
    assert tokenizer.convert_tokens_to_ids(f"<extra_id_{k}>") == vocabulary.vocab_size - 1 - k


def test_export_takes_the_vocabulary_the_run_recorded(tmp_path, capsys):
  """A run's config.gin (gin's own config_str) names its vocabulary; the command writes the
  matching tokenizer without being told."""
  import gin  # pylint: disable=g-import-not-at-top
  from synthetic_pretraining import cli  # pylint: disable=g-import-not-at-top
  from synthetic_pretraining.data import vocab  # pylint: disable=g-import-not-at-top,unused-import
  config = t5.get_config("tiny")
  run = tmp_path / "run"
  writer = checkpoints.Checkpointer(str(run), period=1)
  writer.save(5, {"step": 5, "params": random_params(config, 0)}, force=True)
  writer.close()
  (run / "run_info.json").write_text(json.dumps(
      {"model_config": {k: list(v) if isinstance(v, tuple) else v
                        for k, v in dataclasses.asdict(config).items()}}))
  spm_file = os.path.join(os.path.dirname(seqio.__file__), "test_data", "sentencepiece",
                          "sentencepiece.model")
  gin.clear_config()
  try:
    for name, path in (("byte", None), ("t5", spm_file)):
      gin.parse_config([f"VOCABULARY = {name!r}", f"T5_SPM_PATH = {path!r}",
                        "vocab.task_vocabulary.name = %VOCABULARY",
                        "vocab.task_vocabulary.t5_spm_path = %T5_SPM_PATH"])
      (run / "config.gin").write_text(gin.config_str())
      gin.clear_config()
      assert hf.run_vocabulary(str(run / "checkpoints" / "5")) == (name, path)
  finally:
    gin.clear_config()
  (run / "config.gin").write_text(gin.config_str() + "VOCABULARY = 'byte'\n"
                                  "vocab.task_vocabulary.name = %VOCABULARY\n")
  assert cli.main(["export", "--to", "hf", str(run), str(tmp_path / "hf")]) == 0
  assert "vocabulary 'byte' (from the run's config.gin)" in capsys.readouterr().out
  assert json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())[
      "tokenizer_class"] == "ByT5Tokenizer"
  (run / "config.gin").write_text("")
  assert hf.run_vocabulary(str(run)) is None
  assert cli.main(["export", "--to", "hf", str(run), str(tmp_path / "none")]) == 0
  assert "no tokenizer written" in capsys.readouterr().out
  assert not (tmp_path / "none" / "tokenizer_config.json").exists()


# ---------------------------------------------------------------------------------------------
# Bad input: each error names the field or the tensor.


def _exported(tmp_path, config=V11, name="hf"):
  hf.export_params(random_params(config, 0), config, tmp_path / name)
  return tmp_path / name


def _edit_config(folder, **changes):
  path = folder / "config.json"
  config = json.loads(path.read_text())
  config.update(changes)
  path.write_text(json.dumps(config))


@pytest.mark.parametrize("changes, message", [
    ({"feed_forward_proj": "gated-gelu_fast"}, "feed_forward_proj='gated-gelu_fast' is not supported"),
    ({"feed_forward_proj": "gelu"}, "feed_forward_proj='gelu' is not supported"),
    ({"model_type": "umt5"}, "model_type='umt5' is not supported"),
    ({"model_type": "switch_transformers", "num_experts": 8}, "model_type='switch_transformers'"),
    ({"architectures": ["T5EncoderModel"]}, "architectures=['T5EncoderModel']"),
    ({"layer_norm_epsilon": 1e-5}, "layer_norm_epsilon=1e-05 is not supported"),
    ({"pad_token_id": 3}, "pad_token_id=3 is not supported"),
    ({"num_experts": 4}, "num_experts=4: mixture-of-experts"),
])
def test_unsupported_config_names_field_and_value(tmp_path, changes, message):
  folder = _exported(tmp_path)
  _edit_config(folder, **changes)
  with pytest.raises(hf.HFCheckpointError, match=message.replace("[", r"\[").replace("]", r"\]")) as e:
    checkpoints.load_params(str(folder))
  assert str(folder / "config.json") in str(e.value)


def test_missing_tensor_is_named(tmp_path):
  folder = _exported(tmp_path)
  tensors = load_file(str(folder / "model.safetensors"))
  del tensors["decoder.block.2.layer.1.EncDecAttention.k.weight"]
  save_file(tensors, str(folder / "model.safetensors"))
  with pytest.raises(hf.HFCheckpointError) as e:
    hf.load_hf(folder)
  assert "missing tensor decoder.block.2.layer.1.EncDecAttention.k.weight (expected shape (32, 24))" \
      in str(e.value)
  assert str(folder / "model.safetensors") in str(e.value)


def test_shape_mismatch_is_named(tmp_path):
  folder = _exported(tmp_path)
  _edit_config(folder, d_ff=48)  # the tensors hold d_ff 40
  with pytest.raises(hf.HFCheckpointError) as e:
    hf.load_hf(folder)
  message = str(e.value)
  assert ("tensor encoder.block.0.layer.1.DenseReluDense.wi_0.weight has shape (40, 24), "
          f"{folder / 'config.json'} implies (48, 24)") in message
  assert "decoder.block.2.layer.2.DenseReluDense.wo.weight has shape (24, 40)" in message


def test_unexpected_and_contradicting_tensors_are_named(tmp_path):
  folder = _exported(tmp_path, config=V10)
  tensors = load_file(str(folder / "model.safetensors"))
  tensors["encoder.block.0.layer.0.SelfAttention.gate.weight"] = np.zeros((4, 4), np.float32)
  tensors["lm_head.weight"] = tensors["shared.weight"] + 1  # tied + scaled config, other head
  save_file(tensors, str(folder / "model.safetensors"))
  with pytest.raises(hf.HFCheckpointError) as e:
    hf.load_hf(folder)
  assert "unexpected tensor encoder.block.0.layer.0.SelfAttention.gate.weight" in str(e.value)
  assert "tensor lm_head.weight differs from shared.weight" in str(e.value)


def test_model_mismatch_at_weight_transfer_names_the_parameter(tmp_path):
  """An HF model with another bucket count than the model being trained cannot initialise it."""
  from synthetic_pretraining.train import transfer  # pylint: disable=g-import-not-at-top
  folder = _exported(tmp_path, config=dataclasses.replace(V10, relpos_num_buckets=32))
  with pytest.raises(ValueError, match=r"shape differs: encoder/relpos_bias/rel_embedding: "
                                       r"checkpoint \(4, 32\) vs model \(4, 16\)"):
    transfer.transfer_weights(jax.device_get(t5.init_params(V10, 0)),
                              checkpoints.load_params(str(folder)), "all")
  with pytest.raises(hf.HFCheckpointError,
                     match="relative_attention_num_buckets=32 but the model has "
                           "relpos_num_buckets=16"):
    hf.check_same_network(V10, hf.read_hf_config(str(folder)), str(folder))


def test_export_refuses_unsupported_models_and_occupied_folders(tmp_path):
  params = random_params(V10, 0)
  with pytest.raises(hf.HFCheckpointError, match=r"mlp_activations=\('gelu', 'tanh'\)"):
    hf.export_params(params, dataclasses.replace(V10, mlp_activations=("gelu", "tanh")),
                     tmp_path / "x")
  assert not (tmp_path / "x").exists()
  with pytest.raises(ValueError, match="decoder/logits_dense/kernel"):
    hf.export_params(params, V11, tmp_path / "x")  # v1.0 parameters, v1.1 config
  assert os.listdir(tmp_path) == []  # nothing half-written, no temporary folder left
  (tmp_path / "taken").mkdir()
  (tmp_path / "taken" / "keep.txt").write_text("mine")
  with pytest.raises(hf.HFCheckpointError, match="exists and is not empty"):
    hf.export_params(params, V10, tmp_path / "taken")
  assert os.listdir(tmp_path / "taken") == ["keep.txt"]


def test_export_command_reports_errors_without_traceback(tmp_path, capsys):
  from synthetic_pretraining import cli  # pylint: disable=g-import-not-at-top
  folder = _exported(tmp_path)
  _edit_config(folder, feed_forward_proj="gated-swish")
  assert cli.main(["export", "--to", "hf", str(folder), str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and "feed_forward_proj='gated-swish'" in err
  assert not (tmp_path / "out").exists()
