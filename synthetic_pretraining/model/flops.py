"""Model FLOPs of the T5 train step, for throughput and MFU reporting."""


def model_flops_per_token(config, input_len: int, target_len: int) -> float:
  """Training FLOPs of the model per TARGET token (forward + backward = 3 × forward).

  Counts 6 FLOPs per multiply-accumulate of every matmul with a weight (each weight applied to the
  tokens that go through it: encoder weights and the cross-attention key/value projections to the
  input tokens, the rest of the decoder and the output logits to the target tokens) plus the two
  attention matmuls (QKᵀ and AV, full length² as computed, also for the causal decoder). The
  embedding lookup, layer norms, softmax, relative position biases and the optimizer update are
  not counted (the usual MFU convention).
  """
  d, kv = config.emb_dim, config.num_heads * config.head_dim
  mlp = config.emb_dim * config.mlp_dim * (len(config.mlp_activations) + 1)  # wi_* and wo
  enc_layers, dec_layers = config.num_encoder_layers, config.num_decoder_layers
  macs = enc_layers * input_len * (4 * d * kv + mlp)  # q, k, v, out; MLP
  macs += dec_layers * target_len * (6 * d * kv + mlp)  # self q, k, v, out; cross q, out; MLP
  macs += dec_layers * input_len * 2 * d * kv  # cross-attention keys and values of the encoding
  macs += target_len * d * config.vocab_size  # logits (tied or `logits_dense`)
  macs += enc_layers * 2 * input_len * input_len * kv
  macs += dec_layers * 2 * (target_len * target_len + target_len * input_len) * kv
  return 6.0 * macs / target_len
