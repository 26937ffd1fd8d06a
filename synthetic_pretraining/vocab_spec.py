"""What the synthetic generators know about a vocabulary.

Generators never import TensorFlow, SentencePiece or seqio: they see the vocabulary only through a
`VocabSpec` — the range of ordinary symbol ids, the special ids, and a function that encodes a short
string (a task name, a number, "yes"/"no") into ids. With the T5 SentencePiece model
(`cc_all.32000` + 100 extra ids) `VocabSpec.t5()` reproduces the original release's ids exactly;
`VocabSpec.byte()` mirrors seqio's `ByteVocabulary` and needs nothing on disk.

Extra ids count downwards from the top of the vocabulary, as in T5: `<extra_id_0>` is the last id.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

T5_SPM_PATH = "gs://t5-data/vocabs/cc_all.32000/sentencepiece.model"
T5_BASE_VOCAB_SIZE = 32000
NUM_EXTRA_IDS = 100


@dataclasses.dataclass(frozen=True)
class VocabSpec:
  """Ids a generator may emit.

  Attributes:
    symbol_low: first ordinary symbol id (inclusive); T5: 2 (unk), after pad 0 and eos 1.
    symbol_high: last ordinary symbol id (inclusive); T5: 31999.
    base_vocab_size: size before the extra ids (T5: 32000).
    num_extra_ids: number of sentinel ids appended after the base vocabulary.
    encode_fn: maps a short string to ids (SentencePiece for T5, UTF-8 bytes for ByteVocabulary).
    space_piece_id: the id of a lone "▁" piece; dropped when it leads an encoded answer (T5: 3).
    pad_id, eos_id: as in T5.
  """

  symbol_low: int
  symbol_high: int
  base_vocab_size: int
  num_extra_ids: int
  encode_fn: Callable[[str], Sequence[int]] = dataclasses.field(compare=False)
  space_piece_id: int | None = None
  pad_id: int = 0
  eos_id: int = 1
  name: str = "custom"

  def __post_init__(self):
    if not 0 <= self.symbol_low <= self.symbol_high < self.base_vocab_size:
      raise ValueError(
          f"VocabSpec {self.name}: symbol range [{self.symbol_low}, {self.symbol_high}] must lie "
          f"inside [0, {self.base_vocab_size})")

  @property
  def vocab_size(self) -> int:
    return self.base_vocab_size + self.num_extra_ids

  @property
  def num_symbols(self) -> int:
    return self.symbol_high - self.symbol_low + 1

  def extra_id(self, k: int) -> int:
    """Id of `<extra_id_k>`: <extra_id_0> is the highest id."""
    if not 0 <= k < self.num_extra_ids:
      raise ValueError(f"<extra_id_{k}> does not exist: vocabulary {self.name} has "
                       f"{self.num_extra_ids} extra ids")
    return self.base_vocab_size + self.num_extra_ids - 1 - k

  def encode(self, text: str) -> list[int]:
    """Encodes `text`, dropping a leading lone-space piece (as the release does)."""
    ids = list(self.encode_fn(text))
    if ids and self.space_piece_id is not None and ids[0] == self.space_piece_id:
      ids = ids[1:]
    return ids

  # ---------------------------------------------------------------------------------------------
  @classmethod
  def byte(cls, num_extra_ids: int = NUM_EXTRA_IDS) -> "VocabSpec":
    """seqio.ByteVocabulary: pad 0, eos 1, unk 2, byte b -> b + 3, extra ids after 259."""
    return cls(symbol_low=3, symbol_high=258, base_vocab_size=259, num_extra_ids=num_extra_ids,
               encode_fn=lambda s: [b + 3 for b in s.encode("utf-8")], space_piece_id=None,
               name="byte")

  @classmethod
  def from_sentencepiece(cls, model_path: str, num_extra_ids: int = NUM_EXTRA_IDS,
                         name: str | None = None) -> "VocabSpec":
    """Any SentencePiece model (T5's or one trained locally): symbols = all ids but pad/eos."""
    import sentencepiece as spm  # Local import: only needed for SentencePiece vocabularies.
    proto = read_bytes(model_path)
    processor = spm.SentencePieceProcessor()
    processor.LoadFromSerializedProto(proto)
    size = processor.GetPieceSize()
    space = processor.PieceToId("▁")
    space_id = space if processor.IdToPiece(space) == "▁" and space != processor.unk_id() else None
    return cls(symbol_low=2, symbol_high=size - 1, base_vocab_size=size,
               num_extra_ids=num_extra_ids, encode_fn=processor.EncodeAsIds,
               space_piece_id=space_id, name=name or model_path)

  @classmethod
  def t5(cls, model_path: str = T5_SPM_PATH) -> "VocabSpec":
    """The T5 `cc_all.32000` vocabulary with 100 extra ids: the release's exact ids."""
    return cls.from_sentencepiece(model_path, NUM_EXTRA_IDS, name="t5")


def read_bytes(path: str) -> bytes:
  """A local or remote (gs://, via tf.io.gfile) file's bytes."""
  if "://" in path:
    import tensorflow as tf  # gs:// and other remote paths go through tf.io.gfile.
    with tf.io.gfile.GFile(path, "rb") as f:
      return f.read()
  with open(path, "rb") as f:
    return f.read()
