"""CodeXGLUE code-to-code-trans Java→C#: line i of `<split>.java-cs.txt.java` ↔ line i of `.cs`.

Output `java<TAB>cs`, fields exactly the raw lines (line end removed; TAB/CR inside a line would
become a space — none occur in the official files). Counts: 10,295 / 499 / 1,000.
"""

from __future__ import annotations

import pathlib

from synthetic_pretraining.data.downstream import base
from synthetic_pretraining.data.downstream import common

# Pinned to the snapshot whose files SOURCE.md lists (last change to data/: 5b0334a, 2022-11-02).
_URL = ("https://raw.githubusercontent.com/microsoft/CodeXGLUE/"
        "ac74a62802a0dd159b3258c78a2df8ad36cdf2b9/Code-Code/code-to-code-trans/data/")
_SHA256 = {
    "train.java-cs.txt.java": "397c44e7a0ad250849231a3beeb255ea54078e1cb62cf13359893d474025cb90",
    "train.java-cs.txt.cs": "80013b5b5c7e973df52adec4944b895eaaee0944f09ab6179084631a15d36b7a",
    "valid.java-cs.txt.java": "5cf92447fd81e126c7d791527f71d16dbcb91d3aa4aafda5c7d9d5c30d75a204",
    "valid.java-cs.txt.cs": "513c430d61901a90895b22fb235c532dbdc26b84db9d825e1d04a5856a97aec1",
    "test.java-cs.txt.java": "8e4c9db2467622c119366a89aa0ca798b5f72c11433e3ac3080df21e0e4e06f6",
    "test.java-cs.txt.cs": "7a863a53cba15473d44ef2f7c99096370a204d4c1a54cc3d81c59d4a305756af",
}
_RAW_SPLIT = {"train": "train", "validation": "valid", "test": "test"}


class CodeTranslation(base.Converter):
  name = "code_translation"
  raw_folder = "code_translation"
  raw_files = tuple(
      common.RawFile(name, _URL + name, sha,
                     f"CodeXGLUE Java-C# {name.split('.')[0]} split, "
                     f"{'Java' if name.endswith('.java') else 'C#'} side, one function per line")
      for name, sha in _SHA256.items())

  def convert(self, paths: dict[str, pathlib.Path], options: base.PrepareOptions,
              bad: common.BadLines, clean: common.FieldCleaner) -> base.Converted:
    splits = {}
    for split, raw in _RAW_SPLIT.items():
      java_path = paths[f"{raw}.java-cs.txt.java"]
      cs_path = paths[f"{raw}.java-cs.txt.cs"]
      java, cs = common.read_lines(java_path), common.read_lines(cs_path)
      if len(java) != len(cs):
        raise common.PrepareError(
            f"{java_path} has {len(java)} lines but {cs_path} has {len(cs)}: the files must be "
            "line-parallel (one Java function and its C# translation per line)")
      rows = []
      for i, (j, c) in enumerate(zip(java, cs), 1):
        if not j.strip() or not c.strip():
          bad.add(java_path if not j.strip() else cs_path, i, "expected a non-empty function")
          continue
        rows.append((clean(j), clean(c)))
      splits[split] = rows
    return base.Converted(splits)
