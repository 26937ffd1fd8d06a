"""Default initialisers per parameter kind against SPEC §5.1 (T5X's defaults), by statistical tests.

Each kind's values, pooled over layers and divided by their expected scale, are compared with the
standard law of that kind by a Kolmogorov-Smirnov test at significance 1e-4 (false-alarm rate 1e-4
per kind; about 1e-3 for the whole file), at a fixed seed. Expected laws, from SPEC §5.1:
  token embedding   N(0, 1)                                   (plain normal)
  q/k/v/o kernels   variance-scaling(1, fan_in, normal)       N(0, 1/fan_in); query also ÷ √head_dim
  MLP wi/wo, logits_dense   variance-scaling(1, fan_in, truncated normal): N(0, s²) cut at ±2s,
                    s = √(1/fan_in) / 0.87962566 so that the variance is 1/fan_in
  relpos tables     variance-scaling(1, fan_avg, uniform): U(−√(3/fan_avg), √(3/fan_avg)),
                    fan_avg = (heads + buckets) / 2 for the [heads, buckets] table
  layer-norm scales 1
"""

import math
import re

import numpy as np
import pytest
from scipy import stats

from synthetic_pretraining.model import t5

ALPHA = 1e-4
TRUNC_STD = 0.87962566103423978  # Std of N(0, 1) truncated to [-2, 2].
CONFIGS = {
    "v1.0": t5.get_config("tiny"),
    "v1.1": t5.get_config("tiny", mlp_activations=("gelu", "linear"), logits_via_embedding=False),
    # 64 heads: 4 096 relative-position values, enough to tell uniform from normal.
    "many_heads": t5.get_config("tiny", num_heads=64, head_dim=1),
}


def expected_law(name, shape, config):
  """(kind, scale, standard law) for one parameter; values / scale follow the standard law."""
  if name == "token_embedder/embedding":
    return "embedding", 1.0, stats.norm()
  if name.endswith("relpos_bias/rel_embedding"):
    assert shape == (config.num_heads, config.relpos_num_buckets)
    fan_avg = (shape[0] + shape[1]) / 2
    return "relpos", math.sqrt(3 / fan_avg), stats.uniform(-1, 2)
  if name.endswith("/scale"):
    return "layer_norm", 1.0, None
  match = re.search(r"(query|key|value|out)/kernel$", name)
  if match:
    scale = math.sqrt(1 / shape[0])
    if match.group(1) == "query":
      scale /= math.sqrt(config.head_dim)
    return match.group(1), scale, stats.norm()
  if re.search(r"mlp/(wi|wi_\d|wo)/kernel$", name) or name == "decoder/logits_dense/kernel":
    kind = "logits_dense" if "logits_dense" in name else "mlp"
    return kind, math.sqrt(1 / shape[0]) / TRUNC_STD, stats.truncnorm(-2, 2)
  raise AssertionError(f"no expected initialiser for {name}")


def _pools(config, seed=0):
  params = {k: np.asarray(v, np.float64)
            for k, v in t5.flatten_names(t5.init_params(config, seed)).items()}
  pools = {}
  for name, value in params.items():
    kind, scale, law = expected_law(name, value.shape, config)
    pools.setdefault(kind, ([], law))[0].append(value.ravel() / scale)
  return params, {k: (np.concatenate(v), law) for k, (v, law) in pools.items()}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def initialised(request):
  config = CONFIGS[request.param]
  return request.param, config, *_pools(config)


def test_every_parameter_has_a_known_kind(initialised):
  version, config, params, pools = initialised
  kinds = {"embedding", "relpos", "layer_norm", "query", "key", "value", "out", "mlp"}
  extra = len(config.mlp_activations) - 1  # Gated MLPs have wi_0, wi_1.
  # SPEC §5.1: 131 tensors for 6 + 6 layers (5 + 8 per encoder layer + 13 per decoder layer).
  assert len(params) == (5 + config.num_encoder_layers * (8 + extra)
                         + config.num_decoder_layers * (13 + extra)
                         + (0 if config.logits_via_embedding else 1))
  if version == "v1.1":
    kinds.add("logits_dense")
    assert params["decoder/logits_dense/kernel"].shape == (config.emb_dim, config.vocab_size)
  assert set(pools) == kinds


@pytest.mark.parametrize("kind", ["embedding", "relpos", "query", "key", "value", "out", "mlp",
                                  "logits_dense"])
def test_kind_follows_its_law(initialised, kind):
  version, _, _, pools = initialised
  if kind not in pools:
    assert version != "v1.1" and kind == "logits_dense"
    return
  values, law = pools[kind]
  assert len(values) >= 256
  result = stats.kstest(values, law.cdf)
  assert result.pvalue > ALPHA, (kind, result)


def test_truncation_and_tails(initialised):
  """Truncated kinds never pass ±2 s; plain normals do, about 4.55 % of the time."""
  _, _, _, pools = initialised
  for kind in ("mlp", "logits_dense"):
    if kind in pools:
      assert np.abs(pools[kind][0]).max() <= 2.0 + 1e-6, kind
  for kind in ("embedding", "query", "key", "value", "out"):
    values = pools[kind][0]
    n, p = len(values), 2 * stats.norm.sf(2)
    beyond = int(np.sum(np.abs(values) > 2))
    # Two-sided binomial bounds at the same false-alarm rate.
    lo, hi = stats.binom.ppf(ALPHA / 2, n, p), stats.binom.isf(ALPHA / 2, n, p)
    assert lo <= beyond <= hi, (kind, beyond, n * p)
  relpos = pools["relpos"][0]
  assert np.abs(relpos).max() <= 1.0


def test_layer_norm_scales_are_one(initialised):
  _, _, params, _ = initialised
  scales = [v for k, v in params.items() if k.endswith("/scale")]
  assert scales and all(np.all(v == 1.0) for v in scales)


def test_the_tests_tell_the_initialisers_apart():
  """Power check: each kind's values are rejected under a neighbouring wrong law."""
  _, pools = _pools(CONFIGS["v1.1"])
  _, wide = _pools(CONFIGS["many_heads"])
  same_variance_normal = stats.norm(scale=TRUNC_STD)  # Plain normal with the truncated variance.
  assert stats.kstest(pools["mlp"][0], same_variance_normal.cdf).pvalue < ALPHA
  assert stats.kstest(pools["logits_dense"][0], same_variance_normal.cdf).pvalue < ALPHA
  # A query without the ÷ √head_dim (here 4) is 4x too wide.
  assert stats.kstest(pools["query"][0] / 4, stats.norm().cdf).pvalue < ALPHA
  # fan_in-normal instead of fan_avg-uniform for the relpos table.
  relpos = wide["relpos"][0]
  assert len(relpos) == 4096
  assert stats.kstest(relpos, stats.norm(scale=1 / math.sqrt(3)).cdf).pvalue < ALPHA
  # fan_in instead of fan_avg for the [64, 32] table: limits √(3/64) instead of √(3/48).
  assert stats.kstest(relpos * math.sqrt(48 / 64), stats.uniform(-1, 2).cdf).pvalue < ALPHA
  # Truncated instead of plain normal for the embedding.
  assert stats.kstest(pools["embedding"][0] * TRUNC_STD, stats.truncnorm(-2, 2).cdf).pvalue < ALPHA
