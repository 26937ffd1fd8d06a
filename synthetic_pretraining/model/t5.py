"""A Flax (linen) T5 encoder-decoder whose parameter tree is exactly T5X's.

Parameter names, shapes and logical axis names follow T5X's `examples/t5/network.py`, so T5X
checkpoints load by name and the statistics-based initialisations (SPEC §6) select groups by name:

  token_embedder/embedding                                 [vocab, embed]
  {encoder,decoder}/relpos_bias/rel_embedding              [heads, relpos_buckets]
  encoder/layers_i/attention/{query,key,value}/kernel      [embed, joined_kv]
  encoder/layers_i/attention/out/kernel                    [joined_kv, embed]
  …/mlp/wi/kernel (v1.0) or mlp/wi_0, mlp/wi_1 (v1.1)      [embed, mlp]
  …/mlp/wo/kernel                                          [mlp, embed]
  encoder/layers_i/{pre_attention,pre_mlp}_layer_norm/scale
  decoder/layers_i/{self_attention,encoder_decoder_attention}/…
  decoder/layers_i/{pre_self_attention,pre_cross_attention,pre_mlp}_layer_norm/scale
  {encoder/encoder_norm, decoder/decoder_norm}/scale       [embed]
  decoder/logits_dense/kernel (v1.1 only)                  [embed, vocab]

T5 v1.0 ties the output layer to the embedding (logits = h·Eᵀ/√d); v1.1 has `logits_dense`.
Parameters are float32; `dtype` sets the activation dtype (bfloat16 on accelerators).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np

from synthetic_pretraining import param_tree

Array = jax.Array
_NEG_INF = -1e10


@gin.configurable
@dataclasses.dataclass(frozen=True)
class T5Config:
  """Hyper-parameters of the encoder-decoder (T5X's `T5Config`)."""

  vocab_size: int = 32128
  emb_dim: int = 512
  num_heads: int = 8
  num_encoder_layers: int = 6
  num_decoder_layers: int = 6
  head_dim: int = 64
  mlp_dim: int = 2048
  mlp_activations: tuple[str, ...] = ("relu",)
  dropout_rate: float = 0.1
  logits_via_embedding: bool = True
  dtype: str = "float32"
  float32_attention_logits: bool = True
  relpos_num_buckets: int = 32
  relpos_max_distance: int = 128

  def __post_init__(self):
    for name in ("vocab_size", "emb_dim", "num_heads", "num_encoder_layers", "num_decoder_layers",
                 "head_dim", "mlp_dim"):
      if getattr(self, name) <= 0:
        raise ValueError(f"T5Config.{name} must be positive, got {getattr(self, name)}")
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError(f"T5Config.dropout_rate must be in [0, 1), got {self.dropout_rate}")
    object.__setattr__(self, "mlp_activations", tuple(self.mlp_activations))

  @property
  def activation_dtype(self):
    return jnp.dtype(self.dtype)


PRESETS = {
    # T5 v1.0 small: the paper's model (60,506,624 parameters).
    "t5_small": T5Config(),
    # T5 v1.1 small: gated-GELU, untied logits; the CNNDM natural baseline.
    "t5_1_1_small": T5Config(emb_dim=512, num_heads=6, num_encoder_layers=8, num_decoder_layers=8,
                             head_dim=64, mlp_dim=1024, mlp_activations=("gelu", "linear"),
                             logits_via_embedding=False, dtype="bfloat16"),
    # A tiny model for CPU tests and the laptop-scale experiment.
    "tiny": T5Config(vocab_size=384, emb_dim=64, num_heads=4, num_encoder_layers=2,
                     num_decoder_layers=2, head_dim=16, mlp_dim=256, dropout_rate=0.0),
}


def get_config(name: str, **overrides) -> T5Config:
  """A preset (`t5_small`, `t5_1_1_small`, `tiny`) with optional field overrides."""
  if name not in PRESETS:
    raise ValueError(f"unknown model preset {name!r}; valid presets: {sorted(PRESETS)}")
  return dataclasses.replace(PRESETS[name], **overrides)


# ------------------------------------------------------------------------------------------------
# Initialisers (as T5X's defaults).
_ATTENTION_INIT = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
_MLP_INIT = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
_RELPOS_INIT = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")
_EMBED_INIT = nn.initializers.normal(stddev=1.0)


def _param(module: nn.Module, name: str, init: Callable, shape: Sequence[int],
           axes: tuple[str, ...]) -> Array:
  return module.param(name, nn.with_logical_partitioning(init, axes), tuple(shape), jnp.float32)


def _activation(name: str) -> Callable[[Array], Array]:
  if name == "linear":
    return lambda x: x
  if name == "gelu":
    return functools.partial(nn.gelu, approximate=True)
  if hasattr(nn, name):
    return getattr(nn, name)
  raise ValueError(f"unknown MLP activation {name!r}")


class LayerNorm(nn.Module):
  """T5's RMS layer norm: scale only, no bias, no mean subtraction; computed in float32."""

  dtype: Any = jnp.float32
  epsilon: float = 1e-6

  @nn.compact
  def __call__(self, x: Array) -> Array:
    x = jnp.asarray(x, jnp.float32)
    scale = _param(self, "scale", nn.initializers.ones, (x.shape[-1],), ("embed",))
    variance = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
    y = x * jax.lax.rsqrt(variance + self.epsilon)
    return jnp.asarray(y * scale, self.dtype)


class Dense(nn.Module):
  """A bias-free dense layer whose kernel is stored 2-D, as T5X's DenseGeneral stores it."""

  features: int
  kernel_axes: tuple[str, str]
  kernel_init: Callable = _MLP_INIT
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = _param(self, "kernel", self.kernel_init, (x.shape[-1], self.features),
                    self.kernel_axes)
    return jnp.dot(jnp.asarray(x, self.dtype), jnp.asarray(kernel, self.dtype))


class Embed(nn.Module):
  """Token embedding; `attend` gives the tied output projection."""

  num_embeddings: int
  features: int
  dtype: Any = jnp.float32

  def setup(self):
    self.embedding = _param(self, "embedding", _EMBED_INIT, (self.num_embeddings, self.features),
                            ("vocab", "embed"))

  def __call__(self, ids: Array) -> Array:
    return jnp.take(jnp.asarray(self.embedding, self.dtype), ids, axis=0)

  def attend(self, x: Array) -> Array:
    return jnp.dot(x, jnp.asarray(self.embedding, x.dtype).T)


def relative_position_bucket(relative_position: Array, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> Array:
  """T5's log-spaced bucketing of (key − query) positions."""
  ret = 0
  n = -relative_position
  if bidirectional:
    num_buckets //= 2
    ret += (n < 0).astype(np.int32) * num_buckets
    n = np.abs(n)
  else:
    n = np.maximum(n, 0)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  val_if_large = max_exact + (
      np.log(n.astype(np.float32) / max_exact + np.finfo(np.float32).eps) /
      np.log(max_distance / max_exact) * (num_buckets - max_exact)).astype(np.int32)
  val_if_large = np.minimum(val_if_large, num_buckets - 1)
  return ret + np.where(is_small, n, val_if_large)


class RelativePositionBiases(nn.Module):
  """One [heads, buckets] table per stack; returns a [1, heads, q, k] attention bias."""

  num_heads: int
  num_buckets: int
  max_distance: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, q_len: int, k_len: int, bidirectional: bool) -> Array:
    context = np.arange(q_len, dtype=np.int32)[:, None]
    memory = np.arange(k_len, dtype=np.int32)[None, :]
    buckets = relative_position_bucket(memory - context, bidirectional, self.num_buckets,
                                       self.max_distance)
    table = _param(self, "rel_embedding", _RELPOS_INIT, (self.num_heads, self.num_buckets),
                   ("heads", "relpos_buckets"))
    # One-hot contraction instead of a gather: partitions cleanly and is cheap at these sizes.
    one_hot = jax.nn.one_hot(buckets, self.num_buckets, dtype=jnp.float32)
    values = jnp.einsum("hb,qkb->hqk", table, one_hot)
    return jnp.asarray(values[None], self.dtype)


class MultiHeadAttention(nn.Module):
  """Dot-product attention without biases or logit scaling (folded into the query init).

  In `decode` mode the keys/values of previous steps live in the "cache" collection
  (`cached_key`, `cached_value`: [batch, max_length, heads, head_dim]; `cache_index`).
  """

  num_heads: int
  head_dim: int
  dropout_rate: float
  dtype: Any = jnp.float32
  float32_logits: bool = True

  @nn.compact
  def __call__(self, inputs_q: Array, inputs_kv: Array, bias: Array | None,
               deterministic: bool, decode: bool = False) -> Array:
    features = self.num_heads * self.head_dim
    depth_scaling = np.sqrt(self.head_dim).astype(np.float32)
    query_init = lambda *args: _ATTENTION_INIT(*args) / depth_scaling
    dense = functools.partial(Dense, features=features, kernel_axes=("embed", "joined_kv"),
                              dtype=self.dtype)
    split = lambda x: x.reshape(x.shape[:2] + (self.num_heads, self.head_dim))
    query = split(dense(kernel_init=query_init, name="query")(inputs_q))
    key = split(dense(kernel_init=_ATTENTION_INIT, name="key")(inputs_kv))
    value = split(dense(kernel_init=_ATTENTION_INIT, name="value")(inputs_kv))
    query = nn.with_logical_constraint(query, ("batch", "length", "heads", "kv"))
    key = nn.with_logical_constraint(key, ("batch", "length", "heads", "kv"))
    value = nn.with_logical_constraint(value, ("batch", "length", "heads", "kv"))

    if decode:
      is_initialized = self.has_variable("cache", "cached_key")
      cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
      cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
      cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
      if is_initialized:
        if query.shape[1] != 1:
          raise ValueError(f"decode mode feeds one token per step, got length {query.shape[1]}")
        index = cache_index.value
        key = jax.lax.dynamic_update_slice(cached_key.value, key, (0, index, 0, 0))
        value = jax.lax.dynamic_update_slice(cached_value.value, value, (0, index, 0, 0))
        cached_key.value, cached_value.value = key, value
        cache_index.value = index + 1
        # Attend only to positions already written; `bias` holds row `index` of the full bias.
        valid = jnp.arange(key.shape[1]) <= index
        step_mask = jnp.where(valid, 0.0, _NEG_INF).astype(jnp.float32)[None, None, None, :]
        bias = step_mask if bias is None else bias + step_mask

    logits_dtype = jnp.float32 if self.float32_logits else self.dtype
    logits = jnp.einsum("bqhd,bkhd->bhqk", query.astype(logits_dtype), key.astype(logits_dtype))
    if bias is not None:
      logits = logits + bias.astype(logits_dtype)
    weights = jax.nn.softmax(logits.astype(jnp.float32)).astype(self.dtype)
    if not deterministic and self.dropout_rate > 0:
      weights = nn.Dropout(self.dropout_rate)(weights, deterministic=False)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, value)
    out = out.reshape(out.shape[:2] + (features,))
    out = nn.with_logical_constraint(out, ("batch", "length", "joined_kv"))
    return Dense(features=inputs_q.shape[-1], kernel_axes=("joined_kv", "embed"),
                 kernel_init=_ATTENTION_INIT, dtype=self.dtype, name="out")(out)


class MlpBlock(nn.Module):
  """ReLU (v1.0) or gated-GELU (v1.1) feed-forward block; dropout on the hidden activations."""

  mlp_dim: int
  activations: tuple[str, ...]
  dropout_rate: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, deterministic: bool) -> Array:
    hidden = None
    for i, name in enumerate(self.activations):
      layer_name = "wi" if len(self.activations) == 1 else f"wi_{i}"
      h = Dense(self.mlp_dim, ("embed", "mlp"), _MLP_INIT, self.dtype, name=layer_name)(x)
      h = _activation(name)(h)
      hidden = h if hidden is None else hidden * h
    hidden = nn.with_logical_constraint(hidden, ("batch", "length", "mlp"))
    hidden = nn.Dropout(self.dropout_rate, broadcast_dims=(-2,))(hidden, deterministic)
    return Dense(x.shape[-1], ("mlp", "embed"), _MLP_INIT, self.dtype, name="wo")(hidden)


def _residual_dropout(config: T5Config, x: Array, deterministic: bool) -> Array:
  return nn.Dropout(config.dropout_rate, broadcast_dims=(-2,))(x, deterministic)


class EncoderLayer(nn.Module):
  config: T5Config

  @nn.compact
  def __call__(self, x: Array, bias: Array, deterministic: bool) -> Array:
    cfg, dtype = self.config, self.config.activation_dtype
    h = LayerNorm(dtype, name="pre_attention_layer_norm")(x)
    h = MultiHeadAttention(cfg.num_heads, cfg.head_dim, cfg.dropout_rate, dtype,
                           cfg.float32_attention_logits, name="attention")(h, h, bias, deterministic)
    x = x + _residual_dropout(cfg, h, deterministic)
    h = LayerNorm(dtype, name="pre_mlp_layer_norm")(x)
    h = MlpBlock(cfg.mlp_dim, cfg.mlp_activations, cfg.dropout_rate, dtype, name="mlp")(
        h, deterministic)
    x = x + _residual_dropout(cfg, h, deterministic)
    return nn.with_logical_constraint(x, ("batch", "length", "embed"))


class DecoderLayer(nn.Module):
  config: T5Config

  @nn.compact
  def __call__(self, y: Array, encoded: Array, self_bias: Array, cross_bias: Array | None,
               deterministic: bool, decode: bool) -> Array:
    cfg, dtype = self.config, self.config.activation_dtype
    attention = functools.partial(MultiHeadAttention, cfg.num_heads, cfg.head_dim,
                                  cfg.dropout_rate, dtype, cfg.float32_attention_logits)
    h = LayerNorm(dtype, name="pre_self_attention_layer_norm")(y)
    h = attention(name="self_attention")(h, h, self_bias, deterministic, decode)
    y = y + _residual_dropout(cfg, h, deterministic)
    h = LayerNorm(dtype, name="pre_cross_attention_layer_norm")(y)
    h = attention(name="encoder_decoder_attention")(h, encoded, cross_bias, deterministic)
    y = y + _residual_dropout(cfg, h, deterministic)
    h = LayerNorm(dtype, name="pre_mlp_layer_norm")(y)
    h = MlpBlock(cfg.mlp_dim, cfg.mlp_activations, cfg.dropout_rate, dtype, name="mlp")(
        h, deterministic)
    y = y + _residual_dropout(cfg, h, deterministic)
    return nn.with_logical_constraint(y, ("batch", "length", "embed"))


def _mask_to_bias(mask: Array) -> Array:
  return jnp.where(mask, 0.0, _NEG_INF).astype(jnp.float32)


def attention_mask(query_ok: Array, key_ok: Array, query_segments: Array | None = None,
                   key_segments: Array | None = None) -> Array:
  """[batch, 1, q, k] boolean mask: both positions are real tokens (and in the same segment)."""
  mask = query_ok[:, None, :, None] & key_ok[:, None, None, :]
  if query_segments is not None:
    mask &= query_segments[:, None, :, None] == key_segments[:, None, None, :]
  return mask


class Encoder(nn.Module):
  config: T5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(self, tokens: Array, segment_ids: Array | None, deterministic: bool) -> Array:
    cfg = self.config
    relpos = RelativePositionBiases(cfg.num_heads, cfg.relpos_num_buckets,
                                    cfg.relpos_max_distance, cfg.activation_dtype,
                                    name="relpos_bias")
    length = tokens.shape[1]
    bias = relpos(length, length, True) + _mask_to_bias(
        attention_mask(tokens > 0, tokens > 0, segment_ids, segment_ids))
    x = self.shared_embedding(tokens.astype(jnp.int32))
    x = _residual_dropout(cfg, x, deterministic)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    for i in range(cfg.num_encoder_layers):
      x = EncoderLayer(cfg, name=f"layers_{i}")(x, bias, deterministic)
    x = LayerNorm(cfg.activation_dtype, name="encoder_norm")(x)
    return _residual_dropout(cfg, x, deterministic)


class Decoder(nn.Module):
  config: T5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(self, encoded: Array, encoder_ok: Array, decoder_input_tokens: Array,
               decoder_target_tokens: Array | None, encoder_segment_ids: Array | None,
               decoder_segment_ids: Array | None, deterministic: bool, decode: bool,
               max_decode_length: int | None) -> Array:
    cfg = self.config
    relpos = RelativePositionBiases(cfg.num_heads, cfg.relpos_num_buckets,
                                    cfg.relpos_max_distance, cfg.activation_dtype,
                                    name="relpos_bias")
    length = decoder_input_tokens.shape[1]
    if decode:
      # One step: bias row `cache_index` of the [max_len, max_len] causal table.
      full = relpos(max_decode_length, max_decode_length, False)
      had_cache = self.has_variable("cache", "decoder_step")
      index = self.variable("cache", "decoder_step", lambda: jnp.array(0, jnp.int32))
      self_bias = jax.lax.dynamic_slice_in_dim(full, index.value, 1, axis=2)
      if had_cache:  # The first call only creates the cache (as the attention layers do).
        index.value = index.value + 1
      cross_bias = _mask_to_bias(attention_mask(jnp.ones_like(decoder_input_tokens, bool),
                                                encoder_ok))
    else:
      target = decoder_input_tokens if decoder_target_tokens is None else decoder_target_tokens
      causal = jnp.tril(jnp.ones((length, length), bool))[None, None]
      mask = attention_mask(target > 0, target > 0, decoder_segment_ids, decoder_segment_ids)
      self_bias = relpos(length, length, False) + _mask_to_bias(mask & causal)
      cross_bias = _mask_to_bias(attention_mask(target > 0, encoder_ok, decoder_segment_ids,
                                                encoder_segment_ids))
    y = self.shared_embedding(decoder_input_tokens.astype(jnp.int32))
    y = _residual_dropout(cfg, y, deterministic)
    y = nn.with_logical_constraint(y, ("batch", "length", "embed"))
    for i in range(cfg.num_decoder_layers):
      y = DecoderLayer(cfg, name=f"layers_{i}")(y, encoded, self_bias, cross_bias, deterministic,
                                                decode)
    y = LayerNorm(cfg.activation_dtype, name="decoder_norm")(y)
    y = _residual_dropout(cfg, y, deterministic)
    if cfg.logits_via_embedding:
      logits = self.shared_embedding.attend(y) / jnp.sqrt(y.shape[-1]).astype(y.dtype)
    else:
      logits = Dense(cfg.vocab_size, ("embed", "vocab"), _MLP_INIT, cfg.activation_dtype,
                     name="logits_dense")(y)
    logits = nn.with_logical_constraint(logits.astype(jnp.float32), ("batch", "length", "vocab"))
    return logits


class Transformer(nn.Module):
  """T5 encoder-decoder. `__call__` gives teacher-forced logits [batch, target_len, vocab]."""

  config: T5Config

  def setup(self):
    cfg = self.config
    self.token_embedder = Embed(cfg.vocab_size, cfg.emb_dim, cfg.activation_dtype)
    self.encoder = Encoder(cfg, self.token_embedder)
    self.decoder = Decoder(cfg, self.token_embedder)

  def encode(self, encoder_input_tokens: Array, encoder_segment_ids: Array | None = None,
             deterministic: bool = True) -> Array:
    return self.encoder(encoder_input_tokens, encoder_segment_ids, deterministic)

  def decode(self, encoded: Array, encoder_input_tokens: Array, decoder_input_tokens: Array,
             decoder_target_tokens: Array | None = None, encoder_segment_ids: Array | None = None,
             decoder_segment_ids: Array | None = None, deterministic: bool = True,
             decode: bool = False, max_decode_length: int | None = None) -> Array:
    return self.decoder(encoded, encoder_input_tokens > 0, decoder_input_tokens,
                        decoder_target_tokens, encoder_segment_ids, decoder_segment_ids,
                        deterministic, decode, max_decode_length)

  def __call__(self, encoder_input_tokens: Array, decoder_input_tokens: Array,
               decoder_target_tokens: Array | None = None,
               encoder_segment_ids: Array | None = None,
               decoder_segment_ids: Array | None = None, deterministic: bool = True) -> Array:
    encoded = self.encode(encoder_input_tokens, encoder_segment_ids, deterministic)
    return self.decode(encoded, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
                       encoder_segment_ids, decoder_segment_ids, deterministic)


# ------------------------------------------------------------------------------------------------
def _dummy_inputs(batch: int = 1, length: int = 1):
  ones = jnp.ones((batch, length), jnp.int32)
  return ones, ones


def init_variables(config: T5Config, seed: int | Array = 0):
  """Boxed variables (params carry their logical axis names as `nn.LogicallyPartitioned`)."""
  rng = jax.random.PRNGKey(seed) if isinstance(seed, int) else seed
  model = Transformer(config)
  return model.init({"params": rng, "dropout": rng}, *_dummy_inputs())


def init_params(config: T5Config, seed: int | Array = 0) -> dict:
  """The float32 parameter tree (plain nested dict of arrays, T5X names)."""
  return nn.unbox(init_variables(config, seed))["params"]


def params_shapes(config: T5Config) -> dict:
  """Parameter shapes without computing them (`jax.ShapeDtypeStruct` leaves)."""
  return jax.eval_shape(lambda: init_params(config, 0))


def params_logical_axes(config: T5Config) -> dict:
  """The logical axis names of each parameter, as a tree of `jax.sharding.PartitionSpec`."""
  boxed = jax.eval_shape(lambda: init_variables(config, 0))
  return nn.get_partition_spec(boxed)["params"]


def count_params(params) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))


def flatten_names(params) -> dict[str, Any]:
  """{'encoder/layers_0/attention/query/kernel': leaf, …}."""
  return param_tree.flatten(params)


unflatten_names = param_tree.unflatten
