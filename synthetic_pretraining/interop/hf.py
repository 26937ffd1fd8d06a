"""Checkpoints both ways between this library and Hugging Face transformers' T5.

Export (`synthetic-pretraining export --to hf CHECKPOINT OUT_DIR`, or `export_hf`) writes a folder
that `transformers.T5ForConditionalGeneration.from_pretrained(OUT_DIR)` loads:

* `config.json`: every field that determines the network (d_model, d_kv, d_ff, num_layers,
  num_decoder_layers, num_heads, relative_attention_num_buckets, relative_attention_max_distance,
  feed_forward_proj, tie_word_embeddings, vocab_size, layer_norm_epsilon, dropout_rate) and the
  special ids (pad 0, eos 1, decoder_start 0);
* `model.safetensors`, written with safetensors' numpy API (no torch needed), float32 or bfloat16;
* `generation_config.json` with the same special ids;
* a tokenizer where one fits (for the vocabulary given, else the one the run's `config.gin`
  records, `run_vocabulary`): for seqio's `ByteVocabulary` the ByT5 tokenizer's configuration
  (its pad 0 / eos 1 / unk 2 / byte+3 ids equal seqio's; the 100 extra ids are listed so that
  `<extra_id_0>` is the highest id, as in seqio and T5, see `BYT5_TOKENIZER_CONFIG`); for a
  SentencePiece vocabulary (T5's, or a local `.model`) the model file as `spiece.model` with a
  `T5Tokenizer` configuration.

Import (`load_hf`, `load_hf_params`) reads such a folder, or any HF T5 folder (`model.safetensors`,
`pytorch_model.bin`, or their sharded `*.index.json` forms; `pytorch_model.bin` needs torch), into
the T5X parameter tree. `synthetic_pretraining.train.checkpoints.load_params` sends folders that
hold a `config.json` here, so an HF folder is accepted wherever a checkpoint is: the trainer's
`INITIAL_CHECKPOINT_PATH` (weight transfer), `evaluate`, `stats`, the statistics initialisations.
Tensor names and shapes are checked against what `config.json` implies, then the tree against the
model's own (`t5x_import.check_param_shapes`, as for T5X checkpoints); every problem is named.

Correspondence (HF torch `nn.Linear` weights are [out, in]: every kernel is transposed):

  shared.weight                                         token_embedder/embedding        (as is)
  {encoder,decoder}.block.0.layer.0.SelfAttention.relative_attention_bias.weight [buckets, heads]
                                                        {encoder,decoder}/relpos_bias/rel_embedding
  encoder.block.i.layer.0.SelfAttention.{q,k,v,o}       encoder/layers_i/attention/{query,key,value,out}
  encoder.block.i.layer.0.layer_norm                    …/pre_attention_layer_norm/scale
  encoder.block.i.layer.1.DenseReluDense.{wi|wi_0,wi_1,wo}   …/mlp/{wi|wi_0,wi_1,wo}
  encoder.block.i.layer.1.layer_norm                    …/pre_mlp_layer_norm/scale
  decoder.block.i.layer.0 (SelfAttention), .1 (EncDecAttention), .2 (DenseReluDense)
                                                        self_attention, encoder_decoder_attention, mlp
  {encoder,decoder}.final_layer_norm.weight             encoder/encoder_norm, decoder/decoder_norm
  lm_head.weight [vocab, d_model]                       decoder/logits_dense/kernel (v1.1)

The output layer: T5 v1.0 (this library's `logits_via_embedding=True`) divides the logits h·Eᵀ by
√d_model; HF multiplies the decoder output by d_model^-0.5 before its (tied) lm_head when the head is
tied (`tie_word_embeddings` true, or `scale_decoder_outputs` true in transformers ≥ 5) — the same
function. v1.1 (`tie_word_embeddings: false`) has an unscaled, untied `lm_head`. transformers 5
creates fresh v1.1 models with an unscaled head tied to `shared`; those import as v1.1 with
`logits_dense` = `shared`ᵀ. A scaled head that differs from `shared` has no equivalent here and is
refused.

Supported `feed_forward_proj`: 'relu' (v1.0), 'gated-gelu' / 'gated-gelu_new' (v1.1: HF's
"gelu_new" is the tanh approximation this model uses), 'gated-relu', 'gated-silu', 'gelu_new'.
Refused, naming field and value: another model_type (only 't5'; mT5, UMT5, LongT5 and the
Switch mixture-of-experts are not accepted), encoder-only checkpoints, other activations ('gelu'
is the exact erf GELU), layer_norm_epsilon other than 1e-6, pad/decoder-start ids other than 0.
Shapes do not show relative_attention_max_distance or which activation a gated MLP uses: a caller
that knows the model a folder must fit can compare the two with `check_same_network`.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import re
import shutil
import sys
import tempfile
from typing import Any, Mapping

import numpy as np

from synthetic_pretraining import vocab_spec as vocab_spec_lib
from synthetic_pretraining import param_tree

CONFIG_FILE = "config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"
TORCH_INDEX_FILE = "pytorch_model.bin.index.json"
WEIGHT_FILES = (SAFETENSORS_FILE, SAFETENSORS_INDEX_FILE, TORCH_FILE, TORCH_INDEX_FILE)

LAYER_NORM_EPSILON = 1e-6  # model/t5.py LayerNorm
PAD_ID, EOS_ID, DECODER_START_ID = 0, 1, 0
NUM_EXTRA_IDS = 100  # the project's vocabularies (data/vocab.py)
BYTE_BASE_VOCAB_SIZE = 259  # seqio.ByteVocabulary: pad, eos, unk + 256 bytes

# HF feed_forward_proj -> this library's T5Config.mlp_activations.
FEED_FORWARD_PROJ = {
    "relu": ("relu",),
    "gelu_new": ("gelu",),
    "gated-gelu": ("gelu", "linear"),
    "gated-gelu_new": ("gelu", "linear"),
    "gated-relu": ("relu", "linear"),
    "gated-silu": ("silu", "linear"),
}
# And back (the canonical name for each).
MLP_ACTIVATIONS = {
    ("relu",): "relu",
    ("gelu",): "gelu_new",
    ("gelu", "linear"): "gated-gelu",
    ("relu", "linear"): "gated-relu",
    ("silu", "linear"): "gated-silu",
}
ARCHITECTURES = ("T5ForConditionalGeneration", "T5WithLMHeadModel", "T5Model")
_MOE_FIELDS = ("num_experts", "num_sparse_encoder_layers", "num_sparse_decoder_layers",
               "expert_capacity", "router_type")
# Tensors HF stores but this model has no separate copy of (checked equal to `shared.weight`), and
# the never-used cross-attention bias some old HF checkpoints carry (HF itself ignores it).
_TIED_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
_IGNORED = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",)


class HFCheckpointError(ValueError):
  """An HF folder (or an export request) this library cannot convert; the message says why."""


# ---------------------------------------------------------------------------------------------
# Configurations.


def _t5():
  from synthetic_pretraining.model import t5  # pylint: disable=g-import-not-at-top  # JAX
  return t5


def feed_forward_proj(mlp_activations) -> str:
  """HF's `feed_forward_proj` for this library's `mlp_activations`."""
  key = tuple(mlp_activations)
  if key not in MLP_ACTIVATIONS:
    raise HFCheckpointError(
        f"T5Config.mlp_activations={key!r} has no transformers T5 equivalent (supported: "
        f"{', '.join(repr(k) for k in MLP_ACTIVATIONS)})")
  return MLP_ACTIVATIONS[key]


def hf_config_from_t5(config, dtype: str = "float32") -> dict[str, Any]:
  """transformers' T5 `config.json` for a `model.t5.T5Config` (weights stored in `dtype`)."""
  return {
      "architectures": ["T5ForConditionalGeneration"],
      "model_type": "t5",
      "is_encoder_decoder": True,
      "vocab_size": config.vocab_size,
      "d_model": config.emb_dim,
      "d_kv": config.head_dim,
      "d_ff": config.mlp_dim,
      "num_layers": config.num_encoder_layers,
      "num_decoder_layers": config.num_decoder_layers,
      "num_heads": config.num_heads,
      "relative_attention_num_buckets": config.relpos_num_buckets,
      "relative_attention_max_distance": config.relpos_max_distance,
      "feed_forward_proj": feed_forward_proj(config.mlp_activations),
      "tie_word_embeddings": bool(config.logits_via_embedding),
      "layer_norm_epsilon": LAYER_NORM_EPSILON,
      "dropout_rate": config.dropout_rate,
      "initializer_factor": 1.0,
      "decoder_start_token_id": DECODER_START_ID,
      "pad_token_id": PAD_ID,
      "eos_token_id": EOS_ID,
      "use_cache": True,
      "dtype": dtype,
  }


def head_is_scaled(hf_config: Mapping[str, Any]) -> bool:
  """Whether HF scales the decoder output by d_model^-0.5 (T5 v1.0's tied head).

  transformers ≥ 5 writes `scale_decoder_outputs`; earlier versions derive it from
  `tie_word_embeddings` (default true).
  """
  if "scale_decoder_outputs" in hf_config:
    return bool(hf_config["scale_decoder_outputs"])
  return hf_config.get("tie_word_embeddings", True) is not False


def _positive_int(hf_config: Mapping[str, Any], field: str, source: str,
                  default: Any = None) -> int:
  value = hf_config.get(field, default)
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    raise HFCheckpointError(f"{source}: {field}={value!r}: expected a positive integer")
  return value


def t5_config_from_hf(hf_config: Mapping[str, Any], source: str = CONFIG_FILE):
  """The `model.t5.T5Config` of an HF T5 `config.json` (as a dict); unsupported fields named.

  `logits_via_embedding` is `head_is_scaled(hf_config)`; `load_hf` may still refuse the folder if
  its tensors contradict that (a scaled head that differs from the embedding).
  """
  if not isinstance(hf_config, Mapping):
    raise HFCheckpointError(f"{source}: expected a JSON object, got {type(hf_config).__name__}")
  model_type = hf_config.get("model_type")
  if model_type != "t5":
    raise HFCheckpointError(
        f"{source}: model_type={model_type!r} is not supported: only T5 encoder-decoders "
        "(model_type 't5': v1.0 and v1.1) convert to this library's model")
  if hf_config.get("is_encoder_decoder", True) is not True:
    raise HFCheckpointError(f"{source}: is_encoder_decoder={hf_config['is_encoder_decoder']!r}: "
                            "an encoder-only checkpoint has no decoder to import")
  architectures = hf_config.get("architectures") or []
  if architectures and not any(a in ARCHITECTURES for a in architectures):
    raise HFCheckpointError(
        f"{source}: architectures={architectures!r} is not supported (expected one of "
        f"{list(ARCHITECTURES)}; T5EncoderModel is encoder-only, the task heads add layers)")
  for field in _MOE_FIELDS:
    if hf_config.get(field) not in (None, 0):
      raise HFCheckpointError(f"{source}: {field}={hf_config[field]!r}: mixture-of-experts "
                              "checkpoints are not supported")
  proj = hf_config.get("feed_forward_proj", "relu")
  if proj not in FEED_FORWARD_PROJ:
    raise HFCheckpointError(
        f"{source}: feed_forward_proj={proj!r} is not supported (supported: "
        f"{', '.join(repr(p) for p in FEED_FORWARD_PROJ)}; note HF's plain 'gelu' is the exact "
        "erf GELU, this model's is the tanh approximation, 'gelu_new')")
  epsilon = hf_config.get("layer_norm_epsilon", LAYER_NORM_EPSILON)
  if epsilon != LAYER_NORM_EPSILON:
    raise HFCheckpointError(f"{source}: layer_norm_epsilon={epsilon!r} is not supported (this "
                            f"model's RMS layer norm uses {LAYER_NORM_EPSILON})")
  for field, wanted, allow_none in (("pad_token_id", PAD_ID, False),
                                    ("decoder_start_token_id", DECODER_START_ID, True)):
    value = hf_config.get(field, wanted)
    if not (value == wanted or (allow_none and value is None)):
      raise HFCheckpointError(f"{source}: {field}={value!r} is not supported (this model pads "
                              f"with id {PAD_ID} and starts decoding from id {DECODER_START_ID})")
  num_layers = _positive_int(hf_config, "num_layers", source, 6)
  decoder_layers = hf_config.get("num_decoder_layers")
  dropout = hf_config.get("dropout_rate", 0.1)
  if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
    raise HFCheckpointError(f"{source}: dropout_rate={dropout!r}: expected a number in [0, 1)")
  return _t5().T5Config(
      vocab_size=_positive_int(hf_config, "vocab_size", source, 32128),
      emb_dim=_positive_int(hf_config, "d_model", source, 512),
      num_heads=_positive_int(hf_config, "num_heads", source, 8),
      num_encoder_layers=num_layers,
      num_decoder_layers=(num_layers if decoder_layers is None else
                          _positive_int(hf_config, "num_decoder_layers", source)),
      head_dim=_positive_int(hf_config, "d_kv", source, 64),
      mlp_dim=_positive_int(hf_config, "d_ff", source, 2048),
      mlp_activations=FEED_FORWARD_PROJ[proj],
      dropout_rate=float(dropout),
      logits_via_embedding=head_is_scaled(hf_config),
      relpos_num_buckets=_positive_int(hf_config, "relative_attention_num_buckets", source, 32),
      relpos_max_distance=_positive_int(hf_config, "relative_attention_max_distance", source,
                                        128))


def check_same_network(model_config, hf_config: Mapping[str, Any], source: str) -> None:
  """Raises naming every HF config field whose value the model's `T5Config` contradicts.

  For callers that know the model a checkpoint must fit (shapes alone do not show
  relative_attention_max_distance or the activation).
  """
  theirs = t5_config_from_hf(hf_config, source)
  fields = {"vocab_size": "vocab_size", "emb_dim": "d_model", "num_heads": "num_heads",
            "num_encoder_layers": "num_layers", "num_decoder_layers": "num_decoder_layers",
            "head_dim": "d_kv", "mlp_dim": "d_ff", "mlp_activations": "feed_forward_proj",
            "logits_via_embedding": "tie_word_embeddings",
            "relpos_num_buckets": "relative_attention_num_buckets",
            "relpos_max_distance": "relative_attention_max_distance"}
  problems = [f"  {hf_field}={hf_config.get(hf_field)!r} but the model has "
              f"{ours}={getattr(model_config, ours)!r}"
              for ours, hf_field in fields.items()
              if getattr(model_config, ours) != getattr(theirs, ours)]
  if problems:
    raise HFCheckpointError(f"{source}: the checkpoint's configuration differs from the "
                            "model's:\n" + "\n".join(problems))


# ---------------------------------------------------------------------------------------------
# Tensor names.


def name_map(config) -> list[tuple[str, str, bool]]:
  """[(HF tensor name, T5X parameter name, transposed?)] for every parameter of `config`."""
  entries = [("shared.weight", "token_embedder/embedding", False)]
  mlp = (["wi"] if len(config.mlp_activations) == 1 else
         [f"wi_{i}" for i in range(len(config.mlp_activations))]) + ["wo"]

  def attention(hf_prefix, prefix):
    for hf_name, name in (("q", "query"), ("k", "key"), ("v", "value"), ("o", "out")):
      entries.append((f"{hf_prefix}.{hf_name}.weight", f"{prefix}/{name}/kernel", True))

  def feed_forward(hf_prefix, prefix):
    for name in mlp:
      entries.append((f"{hf_prefix}.DenseReluDense.{name}.weight", f"{prefix}/mlp/{name}/kernel",
                      True))
    entries.append((f"{hf_prefix}.layer_norm.weight", f"{prefix}/pre_mlp_layer_norm/scale", False))

  for stack in ("encoder", "decoder"):
    entries.append((f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                    f"{stack}/relpos_bias/rel_embedding", True))
  for i in range(config.num_encoder_layers):
    hf_prefix, prefix = f"encoder.block.{i}.layer", f"encoder/layers_{i}"
    attention(f"{hf_prefix}.0.SelfAttention", f"{prefix}/attention")
    entries.append((f"{hf_prefix}.0.layer_norm.weight", f"{prefix}/pre_attention_layer_norm/scale",
                    False))
    feed_forward(f"{hf_prefix}.1", prefix)
  entries.append(("encoder.final_layer_norm.weight", "encoder/encoder_norm/scale", False))
  for i in range(config.num_decoder_layers):
    hf_prefix, prefix = f"decoder.block.{i}.layer", f"decoder/layers_{i}"
    attention(f"{hf_prefix}.0.SelfAttention", f"{prefix}/self_attention")
    entries.append((f"{hf_prefix}.0.layer_norm.weight",
                    f"{prefix}/pre_self_attention_layer_norm/scale", False))
    attention(f"{hf_prefix}.1.EncDecAttention", f"{prefix}/encoder_decoder_attention")
    entries.append((f"{hf_prefix}.1.layer_norm.weight",
                    f"{prefix}/pre_cross_attention_layer_norm/scale", False))
    feed_forward(f"{hf_prefix}.2", prefix)
  entries.append(("decoder.final_layer_norm.weight", "decoder/decoder_norm/scale", False))
  if not config.logits_via_embedding:
    entries.append(("lm_head.weight", "decoder/logits_dense/kernel", True))
  return entries


def _model_shapes(config) -> dict[str, tuple[int, ...]]:
  shapes = _t5().params_shapes(config)
  return {name: tuple(leaf.shape) for name, leaf in param_tree.flatten(shapes).items()}


def _check_model_params(params: Mapping[str, Any], config, source: str) -> None:
  from synthetic_pretraining.train import t5x_import  # pylint: disable=g-import-not-at-top
  t5x_import.check_param_shapes(params, _t5().params_shapes(config), source=source)


def _np_dtype(dtype: str):
  if dtype == "float32":
    return np.dtype(np.float32)
  if dtype == "bfloat16":
    import ml_dtypes  # pylint: disable=g-import-not-at-top
    return np.dtype(ml_dtypes.bfloat16)
  raise HFCheckpointError(f"dtype={dtype!r}: expected 'float32' or 'bfloat16'")


def params_to_hf(params: Mapping[str, Any], config, dtype: str = "float32",
                 source: str = "checkpoint") -> dict[str, np.ndarray]:
  """HF T5 state dict (numpy, C-contiguous, `dtype`) of a T5X-named parameter tree."""
  _check_model_params(params, config, source)
  flat = param_tree.flatten(params)
  np_dtype = _np_dtype(dtype)
  out = {}
  for hf_name, name, transposed in name_map(config):
    value = np.asarray(flat[name], np.float32)
    out[hf_name] = np.ascontiguousarray((value.T if transposed else value).astype(np_dtype))
  return out


def params_from_hf(tensors: Mapping[str, np.ndarray], config, source: str = "checkpoint",
                   config_source: str = CONFIG_FILE) -> dict[str, Any]:
  """T5X-named float32 tree from an HF T5 state dict; every missing, unexpected or misshapen
  tensor is named in one error (shapes as `config` — read from `config_source` — implies)."""
  shapes = _model_shapes(config)
  entries = name_map(config)
  expected = {hf_name: (shapes[name][::-1] if transposed else shapes[name])
              for hf_name, name, transposed in entries}
  problems = []
  for hf_name, shape in expected.items():
    if hf_name not in tensors:
      problems.append(f"  missing tensor {hf_name} (expected shape {shape})")
    elif tuple(np.shape(tensors[hf_name])) != shape:
      problems.append(f"  tensor {hf_name} has shape {tuple(np.shape(tensors[hf_name]))}, "
                      f"{config_source} implies {shape}")
  shared = tensors.get("shared.weight")
  for name in tensors:
    if name in expected or name in _IGNORED:
      continue
    tied_copy = name in _TIED_COPIES or (name == "lm_head.weight" and config.logits_via_embedding)
    if tied_copy and shared is not None and np.shape(tensors[name]) == np.shape(shared):
      if not np.array_equal(np.asarray(tensors[name]), np.asarray(shared)):
        problems.append(f"  tensor {name} differs from shared.weight (this model ties them"
                        + ("; config says the head is tied and scaled (tie_word_embeddings "
                           "true)" if name == "lm_head.weight" else "") + ")")
      continue
    problems.append(f"  unexpected tensor {name} (shape {tuple(np.shape(tensors[name]))})")
  if problems:
    raise HFCheckpointError(f"{source}: tensors do not match {config_source} "
                            f"({len(problems)} problem(s)):\n" + "\n".join(problems))
  flat = {}
  for hf_name, name, transposed in entries:
    value = np.asarray(tensors[hf_name]).astype(np.float32)
    flat[name] = np.ascontiguousarray(value.T if transposed else value)
  params = param_tree.unflatten(flat)
  _check_model_params(params, config, source)
  return params


# ---------------------------------------------------------------------------------------------
# Reading folders.


def is_hf_checkpoint(path: Any) -> bool:
  """A local folder with transformers' `config.json` (the weights are checked when reading)."""
  path = os.fspath(path)
  return os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_FILE))


def read_hf_config(path: str) -> dict[str, Any]:
  config_path = os.path.join(path, CONFIG_FILE)
  try:
    with open(config_path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise HFCheckpointError(f"{config_path}: not valid JSON (line {e.lineno}, column "
                            f"{e.colno}: {e.msg})") from e


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  try:
    return dict(load_file(path))
  except Exception as e:  # safetensors raises its own SafetensorError on corrupt files.
    raise HFCheckpointError(f"{path}: cannot read safetensors file ({e})") from e


def _torch_to_numpy(tensor) -> np.ndarray:
  import torch  # pylint: disable=g-import-not-at-top
  if tensor.dtype in (torch.bfloat16, torch.float16):
    tensor = tensor.float()  # exact: every bfloat16/float16 value is a float32 value
  return tensor.detach().cpu().numpy()


def _read_torch_bin(path: str) -> dict[str, np.ndarray]:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise HFCheckpointError(
        f"{path}: reading pytorch_model.bin needs torch (pip install torch==2.13.0), or convert "
        "the folder to model.safetensors") from e
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch raises pickle / zip errors of several kinds.
    raise HFCheckpointError(f"{path}: cannot read torch checkpoint ({e})") from e
  if not isinstance(state, Mapping):
    raise HFCheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
  return {name: _torch_to_numpy(value) for name, value in state.items()}


def _read_sharded(folder: str, index_file: str, reader) -> dict[str, np.ndarray]:
  index_path = os.path.join(folder, index_file)
  with open(index_path, encoding="utf-8") as f:
    weight_map = json.load(f).get("weight_map")
  if not isinstance(weight_map, Mapping):
    raise HFCheckpointError(f"{index_path}: no 'weight_map' object")
  tensors = {}
  for shard in sorted(set(weight_map.values())):
    shard_tensors = reader(os.path.join(folder, shard))
    for name, file in weight_map.items():
      if file == shard:
        if name not in shard_tensors:
          raise HFCheckpointError(f"{index_path}: tensor {name} is mapped to {shard}, which "
                                  "does not hold it")
        tensors[name] = shard_tensors[name]
  return tensors


def read_hf_tensors(path: str) -> tuple[dict[str, np.ndarray], str]:
  """(HF state dict as numpy arrays in their stored dtype, the file it came from)."""
  for file, read in ((SAFETENSORS_FILE, _read_safetensors), (TORCH_FILE, _read_torch_bin)):
    if os.path.isfile(os.path.join(path, file)):
      return read(os.path.join(path, file)), os.path.join(path, file)
  for file, read in ((SAFETENSORS_INDEX_FILE, _read_safetensors),
                     (TORCH_INDEX_FILE, _read_torch_bin)):
    if os.path.isfile(os.path.join(path, file)):
      return _read_sharded(path, file, read), os.path.join(path, file)
  present = sorted(os.listdir(path))
  raise HFCheckpointError(f"{path}: no weights found: expected one of {list(WEIGHT_FILES)} beside "
                          f"{CONFIG_FILE} (found {present})")


def load_hf(path: Any) -> tuple[dict[str, Any], Any]:
  """(float32 T5X-named parameters, `model.t5.T5Config`) of an HF T5 folder."""
  path = os.fspath(path)
  if not is_hf_checkpoint(path):
    raise HFCheckpointError(f"{path}: not a transformers folder (no {CONFIG_FILE})")
  config_path = os.path.join(path, CONFIG_FILE)
  config = t5_config_from_hf(read_hf_config(path), config_path)
  tensors, source = read_hf_tensors(path)
  if (not config.logits_via_embedding and "lm_head.weight" not in tensors and
      "shared.weight" in tensors):
    # transformers 5 ties an unscaled (v1.1) head to `shared` and saves no lm_head.weight.
    tensors = {**tensors, "lm_head.weight": tensors["shared.weight"]}
  return params_from_hf(tensors, config, source, config_path), config


def load_hf_params(path: Any, expected: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """Parameters of an HF T5 folder (see `load_hf`), checked against `expected` when given."""
  params, _ = load_hf(path)
  if expected is not None:
    from synthetic_pretraining.train import t5x_import  # pylint: disable=g-import-not-at-top
    t5x_import.check_param_shapes(params, expected, source=os.fspath(path))
  return params


# ---------------------------------------------------------------------------------------------
# Export.


def _find_run_info(path: str) -> str | None:
  """run_info.json of the run a checkpoint path belongs to (model dir ← checkpoints/<step>/…)."""
  current = os.path.abspath(path)
  for _ in range(4):
    candidate = os.path.join(current, "run_info.json")
    if os.path.isfile(candidate):
      return candidate
    parent = os.path.dirname(current)
    if parent == current:
      break
    current = parent
  return None


def config_from_run_info(path: str):
  with open(path, encoding="utf-8") as f:
    info = json.load(f)
  fields = {f.name for f in dataclasses.fields(_t5().T5Config)}
  stored = info.get("model_config") or {}
  unknown = sorted(set(stored) - fields)
  if unknown:
    raise HFCheckpointError(f"{path}: model_config has fields this library does not know: "
                            f"{unknown}")
  return _t5().T5Config(**stored)


def infer_config(params: Mapping[str, Any], mlp_activations=None, relpos_max_distance: int = 128,
                 source: str = "checkpoint"):
  """A T5Config from parameter shapes alone (for checkpoints without run_info.json).

  Shapes give every size and whether the MLP is gated and the head untied; the activation is
  assumed to be T5's ('relu' plain, 'gelu' gated) unless `mlp_activations` says otherwise, and the
  relative attention max distance T5's 128.
  """
  flat = {name: tuple(np.shape(v)) for name, v in param_tree.flatten(params).items()}

  def need(name):
    if name not in flat:
      raise HFCheckpointError(f"{source}: no parameter {name}; is this a T5 checkpoint?")
    return flat[name]

  vocab, d_model = need("token_embedder/embedding")
  heads, buckets = need("encoder/relpos_bias/rel_embedding")
  inner = need("encoder/layers_0/attention/query/kernel")[1]
  gated = "encoder/layers_0/mlp/wi_0/kernel" in flat
  mlp_dim = need(f"encoder/layers_0/mlp/{'wi_0' if gated else 'wi'}/kernel")[1]

  def count(stack):
    return len({name.split("/")[1] for name in flat if name.startswith(f"{stack}/layers_")})

  if mlp_activations is None:
    mlp_activations = ("gelu", "linear") if gated else ("relu",)
  return _t5().T5Config(
      vocab_size=vocab, emb_dim=d_model, num_heads=heads, num_encoder_layers=count("encoder"),
      num_decoder_layers=count("decoder"), head_dim=inner // heads, mlp_dim=mlp_dim,
      mlp_activations=tuple(mlp_activations),
      logits_via_embedding="decoder/logits_dense/kernel" not in flat,
      relpos_num_buckets=buckets, relpos_max_distance=relpos_max_distance)


def load_for_export(checkpoint: str, model: str | None = None,
                    mlp_activations=None) -> tuple[dict[str, Any], Any, str]:
  """(parameters, T5Config, where the config came from) of any checkpoint the library reads."""
  checkpoint = os.fspath(checkpoint)
  if is_hf_checkpoint(checkpoint):
    params, config = load_hf(checkpoint)
    return params, config, os.path.join(checkpoint, CONFIG_FILE)
  from synthetic_pretraining.train import checkpoints  # pylint: disable=g-import-not-at-top
  params = checkpoints.load_params(checkpoint)
  run_info = _find_run_info(checkpoint)
  if model is not None:
    config, origin = _t5().get_config(model), f"preset {model!r}"
  elif run_info is not None:
    config, origin = config_from_run_info(run_info), run_info
  else:
    config = infer_config(params, mlp_activations, source=checkpoint)
    origin = (f"parameter shapes (assumed mlp_activations={config.mlp_activations}, "
              f"relpos_max_distance={config.relpos_max_distance})")
  if mlp_activations is not None:
    config = dataclasses.replace(config, mlp_activations=tuple(mlp_activations))
  return params, config, origin


_GIN_MACRO_RE = re.compile(r"^([A-Z_][A-Z0-9_]*)\s*=\s*(.+?)\s*$")
_GIN_VOCAB_RE = re.compile(r"^(?:[\w.]*\.)?task_vocabulary\.(name|t5_spm_path)\s*=\s*(.+?)\s*$")


def run_vocabulary(checkpoint: str) -> tuple[str, str | None] | None:
  """(vocabulary name, T5 SentencePiece path) the run of `checkpoint` trained with, or None.

  Read from the run's resolved `config.gin` (beside run_info.json): the binding of
  `vocab.task_vocabulary.name` / `.t5_spm_path`, following a `%MACRO` (the run files' VOCABULARY,
  T5_SPM_PATH). None when the run did not bind it (e.g. tasks given their own vocabulary).
  """
  run_info = _find_run_info(checkpoint)
  config_gin = os.path.join(os.path.dirname(run_info), "config.gin") if run_info else None
  if not config_gin or not os.path.isfile(config_gin):
    return None
  macros, bound = {}, {}
  with open(config_gin, encoding="utf-8") as f:
    text = re.sub(r"\\\n\s*", " ", f.read())  # gin wraps long values with a trailing backslash
  for line in text.splitlines():
    for regex, target in ((_GIN_MACRO_RE, macros), (_GIN_VOCAB_RE, bound)):
      match = regex.match(line.strip())
      if match:
        target[match.group(1)] = match.group(2)

  def value(text):
    if text is None:
      return None
    if text.startswith("%"):
      return value(macros.get(text[1:]))
    try:
      return ast.literal_eval(text)
    except (ValueError, SyntaxError):
      return None

  name = value(bound.get("name"))
  if not isinstance(name, str) or not name:
    return None
  path = value(bound.get("t5_spm_path"))
  return name, path if isinstance(path, str) and path else None


BYT5_TOKENIZER_CONFIG = {
    "tokenizer_class": "ByT5Tokenizer",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "extra_ids": NUM_EXTRA_IDS,
    # ByT5Tokenizer numbers its sentinels upwards from 259 in the order listed; seqio (and T5)
    # number them downwards from the top: <extra_id_0> = 259 + 100 − 1. Listing them reversed
    # gives seqio's ids.
    "additional_special_tokens": [f"<extra_id_{k}>" for k in reversed(range(NUM_EXTRA_IDS))],
}


def tokenizer_files(vocab: str, vocab_size: int,
                    t5_spm_path: str | None = None) -> dict[str, bytes]:
  """The tokenizer files for the project vocabulary named `vocab` ('byte', 't5' or a .model path;
  't5' is read from `t5_spm_path`, default T5's public gs:// model)."""
  if vocab == "byte":
    if BYTE_BASE_VOCAB_SIZE + NUM_EXTRA_IDS > vocab_size:
      raise HFCheckpointError(f"vocab 'byte' needs {BYTE_BASE_VOCAB_SIZE + NUM_EXTRA_IDS} ids, the "
                              f"model's vocab_size is {vocab_size}")
    return {"tokenizer_config.json": json.dumps(BYT5_TOKENIZER_CONFIG, indent=1).encode()}
  if vocab in ("", "t5"):
    from synthetic_pretraining import vocab_spec  # pylint: disable=g-import-not-at-top
    path = t5_spm_path or vocab_spec.T5_SPM_PATH
  elif "://" in vocab or os.path.isfile(vocab):
    path = vocab
  else:
    raise HFCheckpointError(f"vocab={vocab!r}: expected 'byte', 't5' or the path of a "
                            "SentencePiece .model file")
  try:
    model = vocab_spec_lib.read_bytes(path)
  except Exception as e:  # OSError locally, tf.errors.* for gs:// (e.g. offline).
    raise HFCheckpointError(f"cannot read the SentencePiece model {path} ({e}); for 't5' pass a "
                            "local copy (--t5_spm_path), or --vocab PATH.model") from e
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  try:
    processor = spm.SentencePieceProcessor(model_proto=model)
  except Exception as e:  # sentencepiece raises RuntimeError on a corrupt model.
    raise HFCheckpointError(f"{path}: not a SentencePiece model ({e})") from e
  size = processor.get_piece_size() + NUM_EXTRA_IDS
  if size > vocab_size:
    raise HFCheckpointError(f"{path}: {processor.get_piece_size()} pieces + {NUM_EXTRA_IDS} extra "
                            f"ids exceed the model's vocab_size {vocab_size}")
  for name, wanted in (("pad", PAD_ID), ("eos", EOS_ID)):
    got = getattr(processor, f"{name}_id")()
    if got != wanted:
      raise HFCheckpointError(f"{path}: SentencePiece {name} id is {got}, T5 expects {wanted}")
  config = {"tokenizer_class": "T5Tokenizer", "extra_ids": NUM_EXTRA_IDS, "eos_token": "</s>",
            "unk_token": "<unk>", "pad_token": "<pad>"}
  return {"spiece.model": model, "tokenizer_config.json": json.dumps(config, indent=1).encode()}


def _check_out_dir(out_dir: str, overwrite: bool) -> None:
  if os.path.exists(out_dir) and not overwrite and (not os.path.isdir(out_dir) or
                                                    os.listdir(out_dir)):
    raise HFCheckpointError(f"{out_dir} exists and is not empty (pass overwrite=True / "
                            "--overwrite to replace it)")


def export_params(params: Mapping[str, Any], config, out_dir: Any, *, dtype: str = "float32",
                  vocab: str | None = None, t5_spm_path: str | None = None,
                  overwrite: bool = False, source: str = "parameters") -> dict:
  """Writes `params` (T5X names, `config`'s shapes) as an HF T5 folder `out_dir`.

  Files: config.json, model.safetensors (safetensors' numpy API; `dtype` float32 or bfloat16),
  generation_config.json and, for `vocab` 'byte' / 't5' / a .model path, the tokenizer files.
  Everything is written to a temporary folder beside `out_dir` and renamed into place, so a
  failure leaves nothing half-written. Returns a summary (files, tensor and parameter counts).
  """
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  out_dir = os.path.abspath(os.fspath(out_dir))
  _np_dtype(dtype)
  _check_out_dir(out_dir, overwrite)
  hf_config = hf_config_from_t5(config, dtype)  # refuses unsupported configurations first
  tensors = params_to_hf(params, config, dtype, source=source)
  files = {CONFIG_FILE: json.dumps(hf_config, indent=1).encode(),
           GENERATION_CONFIG_FILE: json.dumps({"decoder_start_token_id": DECODER_START_ID,
                                               "eos_token_id": EOS_ID,
                                               "pad_token_id": PAD_ID}, indent=1).encode()}
  if vocab is not None:
    files.update(tokenizer_files(vocab, config.vocab_size, t5_spm_path))
  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
  try:
    save_file(tensors, os.path.join(tmp, SAFETENSORS_FILE), metadata={"format": "pt"})
    for name, data in files.items():
      with open(os.path.join(tmp, name), "wb") as f:
        f.write(data)
    if os.path.isdir(out_dir):
      shutil.rmtree(out_dir)
    elif os.path.exists(out_dir):
      os.remove(out_dir)
    os.replace(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return {"out_dir": out_dir, "config": config, "files": sorted([SAFETENSORS_FILE, *files]),
          "num_tensors": len(tensors), "num_params": int(sum(v.size for v in tensors.values())),
          "dtype": dtype}


def export_hf(checkpoint: Any, out_dir: Any, *, model: str | None = None, dtype: str = "float32",
              vocab: str | None = None, t5_spm_path: str | None = None, mlp_activations=None,
              overwrite: bool = False) -> dict:
  """Exports any checkpoint the library reads (project, T5X, HF) as an HF T5 folder.

  The model configuration comes from `model` (a preset), else the run's run_info.json, else the
  parameter shapes (`infer_config`); the tokenizer from `vocab`, else the vocabulary the run's
  config.gin records (`run_vocabulary`), else none. See `export_params` for what is written.
  Returns a summary, including where the configuration and the vocabulary came from.
  """
  checkpoint = os.fspath(checkpoint)
  _np_dtype(dtype)
  _check_out_dir(os.path.abspath(os.fspath(out_dir)), overwrite)
  params, config, origin = load_for_export(checkpoint, model, mlp_activations)
  vocab_from = "argument" if vocab is not None else None
  if vocab is None and not is_hf_checkpoint(checkpoint):
    recorded = run_vocabulary(checkpoint)
    if recorded is not None:
      vocab, recorded_path = recorded
      t5_spm_path = t5_spm_path or recorded_path
      vocab_from = "the run's config.gin"
  summary = export_params(params, config, out_dir, dtype=dtype, vocab=vocab,
                          t5_spm_path=t5_spm_path, overwrite=overwrite, source=checkpoint)
  return {**summary, "config_from": origin, "vocab": vocab, "vocab_from": vocab_from}


# ---------------------------------------------------------------------------------------------
# Command line.


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="synthetic-pretraining export",
      description="Write a checkpoint as a Hugging Face transformers T5 folder (config.json, "
      "model.safetensors, tokenizer files) that T5ForConditionalGeneration.from_pretrained loads.")
  parser.add_argument("--to", required=True, choices=["hf"], help="target format")
  parser.add_argument("checkpoint", help="project model dir / step dir, T5X checkpoint, or an HF "
                      "folder")
  parser.add_argument("out_dir", help="folder to write (must not exist or be empty)")
  parser.add_argument("--model", default=None,
                      help="model preset (t5_small, t5_1_1_small, tiny) when the checkpoint has no "
                      "run_info.json; default: run_info.json, else inferred from shapes")
  parser.add_argument("--mlp_activations", default=None,
                      help="comma-separated activations overriding the config, e.g. 'gelu,linear'")
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                      help="dtype of the stored weights")
  parser.add_argument("--vocab", default=None,
                      help="the run's vocabulary: 'byte', 't5' or a SentencePiece .model path; "
                      "decides the tokenizer files (default: what the run's config.gin records; "
                      "none: no tokenizer written)")
  parser.add_argument("--t5_spm_path", default=None,
                      help="local copy of T5's SentencePiece model for --vocab t5 (default: the "
                      "run's T5_SPM_PATH, else gs://t5-data/…)")
  parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")
  return parser


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  activations = (tuple(a.strip() for a in args.mlp_activations.split(","))
                 if args.mlp_activations else None)
  try:
    summary = export_hf(args.checkpoint, args.out_dir, model=args.model, dtype=args.dtype,
                        vocab=args.vocab, t5_spm_path=args.t5_spm_path,
                        mlp_activations=activations, overwrite=args.overwrite)
  except (HFCheckpointError, FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  config = summary["config"]
  print(f"wrote {summary['out_dir']}: {', '.join(summary['files'])}")
  print(f"  {summary['num_tensors']} tensors, {summary['num_params']:,} parameters, "
        f"{summary['dtype']}; T5 {'v1.0 (tied head)' if config.logits_via_embedding else 'v1.1'}"
        f", feed_forward_proj={feed_forward_proj(config.mlp_activations)}; config from "
        f"{summary['config_from']}")
  if summary["vocab"] is None:
    print("  no tokenizer written: the run's config.gin records no vocabulary (pass --vocab "
          "byte|t5|PATH.model)")
  else:
    print(f"  tokenizer for vocabulary {summary['vocab']!r} (from {summary['vocab_from']})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
