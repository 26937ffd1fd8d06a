"""The converter interface every downstream task implements, and the options they read."""

from __future__ import annotations

import abc
import dataclasses
import pathlib

from synthetic_pretraining.data.downstream import common


@dataclasses.dataclass(frozen=True)
class PrepareOptions:
  """Conversion choices; each converter module documents the choices and defaults it reads.

  Attributes:
    strict: stop at the first malformed raw record instead of counting and skipping it.
    skip_checksums: accept raw files whose sha256 differs from the official one.
    seed: seed of the reproducible subsets/splits (cnndm_10k train subset, webqsp validation).
    cnndm_train_size: size of the cnndm_10k training subset.
    cnndm_lowercase: lowercase article and highlights (the paper used a lowercased CNN/DM).
    cnndm_highlight_joiner: string joining the highlight sentences into one target.
    cnndm_prefix: text put before every article (e.g. "summarize: "; the release used none).
    retro_keep_class: keep the `<RX_k>` reaction-class token in front of the product.
    retro_keep_spaces: keep the one-character-per-token spacing of the raw SMILES.
    webqsp_valid_size: examples split off the (null-free) train set as validation.
    webqsp_input: "unifiedskg" (question ; structured knowledge: entities) or "question".
    mtop_input: "tokens" (space-joined official tokenisation, as UnifiedSKG) or "utterance".
  """

  strict: bool = False
  skip_checksums: bool = False
  seed: int = 0
  cnndm_train_size: int = 10_000
  cnndm_lowercase: bool = True
  cnndm_highlight_joiner: str = " "
  cnndm_prefix: str = ""
  retro_keep_class: bool = False
  retro_keep_spaces: bool = False
  webqsp_valid_size: int = 309
  webqsp_input: str = "unifiedskg"
  mtop_input: str = "tokens"


@dataclasses.dataclass
class Converted:
  """A converter's result: rows per output split and facts worth reporting (counts, choices)."""

  splits: dict[str, list[common.Row]]
  notes: dict[str, object] = dataclasses.field(default_factory=dict)


class Converter(abc.ABC):
  """Turns one task's official raw files into `input<TAB>target[<TAB>extra]` rows per split."""

  name: str  # seqio task name and output folder
  raw_folder: str  # folder name under --from / $SP_RAW_DATA_DIR (as in ../shared/data)
  splits: tuple[str, ...] = ("train", "validation", "test")
  num_fields: int = 2
  raw_files: tuple[common.RawFile, ...] = ()

  def locate(self, raw_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Paths of the raw files in a local folder, keyed by `RawFile.name`; PrepareError if absent."""
    if not raw_dir.is_dir():
      raise common.PrepareError(f"raw data folder {raw_dir} for task {self.name} does not exist")
    return {spec.name: common.locate(raw_dir, spec) for spec in self.raw_files}

  def checksummed(self) -> dict[str, common.RawFile]:
    """Raw-file specs by name (used to verify whatever `locate` returned)."""
    return {spec.name: spec for spec in self.raw_files}

  def fetch(self, download_dir: pathlib.Path) -> pathlib.Path:
    """Downloads the official raw files into `download_dir` and returns the folder to read."""
    for spec in self.raw_files:
      if spec.url is None:
        raise common.PrepareError(f"{self.name}: no download location for {spec.name}; "
                                  "pass a local folder with --from")
      common.download(spec.url, download_dir / spec.name, spec.sha256)
    return download_dir

  @abc.abstractmethod
  def convert(self, paths: dict[str, pathlib.Path], options: PrepareOptions,
              bad: common.BadLines, clean: common.FieldCleaner) -> Converted:
    """Reads the located raw files and returns rows per split."""
