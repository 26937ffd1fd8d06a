"""USPTO-50K single-step retrosynthesis (Liu et al. 2017 split): product SMILES → reactants.

Raw lines are one character per token, space separated; sources start with the reaction-class
token `<RX_k>` (k = 1..10). Defaults: the class token is dropped (the "reaction class unknown"
setting) and the spacing is removed, giving plain SMILES on both sides, e.g.
`O=C1CC[C@H](CN2CCN(...)CC2)O1<TAB>reactant1.reactant2`. `--retro_keep_class` puts
`<RX_k> ` in front of the product; `--retro_keep_spaces` keeps the raw spaced tokens.
Which variant the paper used is not recorded. Counts: 40,029 / 5,004 / 5,004.
"""

from __future__ import annotations

import pathlib
import re

from synthetic_pretraining.data.downstream import base
from synthetic_pretraining.data.downstream import common

_URL = ("https://raw.githubusercontent.com/pandegroup/reaction_prediction_seq2seq/"
        "9a6f040198ce990cbdeea812e7e99df7becd142c/processed_data/")
# sha256 of the files at that commit (computed from the byte-identical copies in ../shared/data).
_SHA256 = {
    "train_sources": "a09a5700f1fe3f91aea33d122eda870bd1d99ad2ec0fd81fa37f43b0e2871747",
    "train_targets": "af8fb61d23357618d45a2009020e5354d0325e96d6d3f5b1d9ffd781b6a147ca",
    "valid_sources": "40459c9e5c0f63c1ca08a8ebda2cc80bde42f5dbf0d520cd6c9f9069ae694f48",
    "valid_targets": "b856e45c5b762e416fbe93e75432c5cc4d3ee0dd90582d8b4c0d9cacaf3a6dee",
    "test_sources": "dd10431c929eb9f7fe8952d263c1fed118b8fb4c6e8f8004b73c528adf1989c9",
    "test_targets": "408504846efaafcfc2c0559a507a40232dcf3393fb7263aa83f583ececbd8179",
}
_RAW_SPLIT = {"train": "train", "validation": "valid", "test": "test"}
_CLASS_TOKEN = re.compile(r"<RX_\d+>")


class Retrosynthesis(base.Converter):
  name = "retrosynthesis"
  raw_folder = "retrosynthesis"
  raw_files = tuple(
      common.RawFile(name, _URL + name, sha,
                     f"USPTO-50K {name.split('_')[0]} "
                     f"{'products with <RX_k> class token' if 'sources' in name else 'reactants'}"
                     ", one space-separated character per token")
      for name, sha in _SHA256.items())

  def convert(self, paths: dict[str, pathlib.Path], options: base.PrepareOptions,
              bad: common.BadLines, clean: common.FieldCleaner) -> base.Converted:
    joiner = " " if options.retro_keep_spaces else ""
    splits = {}
    for split, raw in _RAW_SPLIT.items():
      src_path, tgt_path = paths[f"{raw}_sources"], paths[f"{raw}_targets"]
      sources, targets = common.read_lines(src_path), common.read_lines(tgt_path)
      if len(sources) != len(targets):
        raise common.PrepareError(
            f"{src_path} has {len(sources)} lines but {tgt_path} has {len(targets)}: the files "
            "must be line-parallel (product i ↔ reactants i)")
      rows = []
      for i, (src, tgt) in enumerate(zip(sources, targets), 1):
        src_tokens, tgt_tokens = src.split(), tgt.split()
        if len(src_tokens) < 2 or not _CLASS_TOKEN.fullmatch(src_tokens[0]):
          bad.add(src_path, i, "expected '<RX_k> ' followed by the product's SMILES tokens")
          continue
        if not tgt_tokens:
          bad.add(tgt_path, i, "expected the reactants' SMILES tokens, got an empty line")
          continue
        product = joiner.join(src_tokens[1:])
        if options.retro_keep_class:
          product = f"{src_tokens[0]} {product}"
        rows.append((clean(product), clean(joiner.join(tgt_tokens))))
      splits[split] = rows
    return base.Converted(splits, {"class_token_kept": options.retro_keep_class,
                                   "spaces_kept": options.retro_keep_spaces})
