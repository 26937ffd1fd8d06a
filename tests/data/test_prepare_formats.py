"""`prepare` on small files in the official MTOP and CNN/DM formats, and its error handling."""

import csv
import hashlib
import json
import os
import pathlib
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile

import pytest

from synthetic_pretraining.data import downstream
from synthetic_pretraining.data import prepare
from synthetic_pretraining.data.downstream import cnndm
from synthetic_pretraining.data.downstream import common
from tests.conftest import shared_data_path


def read_tsv(path: pathlib.Path) -> list[list[str]]:
  return [line.split("\t") for line in path.read_text(encoding="utf-8")[:-1].split("\n")]


def run(task, out, from_dir, **options):
  return prepare.prepare_task(task, data_dir=out, from_dir=from_dir,
                              options=downstream.PrepareOptions(**options), log=lambda _: None)


# --- MTOP (official 8-column TSV) ---------------------------------------------------------------
MTOP = {
    "train.txt": [
        ("3231", "IN:GET_WEATHER", "22:27:SL:LOCATION", "What's the weather in Paris?",
         "weather", "en_XX", "[IN:GET_WEATHER [SL:LOCATION Paris ] ]",
         ["What", "'s", "the", "weather", "in", "Paris", "?"]),
        ("3232", "IN:CREATE_ALARM", "15:18:SL:DATE_TIME", "set an alarm at 6am",
         "alarm", "en_XX", "[IN:CREATE_ALARM [SL:DATE_TIME at 6am ] ]",
         ["set", "an", "alarm", "at", "6am"]),
    ],
    "eval.txt": [
        ("4001", "IN:GET_MESSAGE", "4:20:SL:CONTACT", "Has Angelika Kratzer video messaged me?",
         "messaging", "en_XX", "[IN:GET_MESSAGE [SL:CONTACT Angelika Kratzer ] "
         "[SL:TYPE_CONTENT video ] ]",
         ["Has", "Angelika", "Kratzer", "video", "messaged", "me", "?"]),
    ],
    "test.txt": [
        ("5001", "IN:PLAY_MUSIC", "5:10:SL:MUSIC_TYPE", "play music",
         "music", "en_XX", "[IN:PLAY_MUSIC [SL:MUSIC_TYPE music ] ]", ["play", "music"]),
    ],
}


def mtop_line(record) -> str:
  *columns, tokens = record
  spans, start = [], 0
  for token in tokens:
    start = record[3].index(token, start)
    spans.append({"start": start, "length": len(token)})
    start += len(token)
  return "\t".join([*columns, json.dumps({"tokens": tokens, "tokenSpans": spans})])


def write_mtop(folder: pathlib.Path, extra_train_lines=()) -> pathlib.Path:
  folder.mkdir(parents=True, exist_ok=True)
  for name, records in MTOP.items():
    lines = [mtop_line(r) for r in records]
    if name == "train.txt":
      lines[1:1] = list(extra_train_lines)
    (folder / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
  return folder


def expected_mtop(name, use_tokens=True):
  return [[" ".join(r[7]) if use_tokens else r[3], r[6]] for r in MTOP[name]]


def test_mtop_tokens_input_and_split_mapping(tmp_path):
  raw = write_mtop(tmp_path / "raw")
  info = run("mtop", tmp_path / "out", raw)
  assert info["splits"] == {"train": 2, "validation": 1, "test": 1}
  assert read_tsv(tmp_path / "out/mtop/train.tsv") == expected_mtop("train.txt")
  assert read_tsv(tmp_path / "out/mtop/validation.tsv") == expected_mtop("eval.txt")
  assert read_tsv(tmp_path / "out/mtop/test.tsv") == expected_mtop("test.txt")
  assert read_tsv(tmp_path / "out/mtop/train.tsv")[0] == [
      "What 's the weather in Paris ?", "[IN:GET_WEATHER [SL:LOCATION Paris ] ]"]


def test_mtop_utterance_input_and_zip_layout_give_same_rows(tmp_path):
  raw = write_mtop(tmp_path / "unzipped" / "mtop" / "en")
  archive_dir = tmp_path / "zipped"
  archive_dir.mkdir()
  with zipfile.ZipFile(archive_dir / "mtop.zip", "w") as z:
    for name in MTOP:
      z.write(raw / name, f"mtop/en/{name}")
  run("mtop", tmp_path / "a", tmp_path / "unzipped", mtop_input="utterance")
  run("mtop", tmp_path / "b", archive_dir, mtop_input="utterance")
  for split, name in (("train", "train.txt"), ("validation", "eval.txt"), ("test", "test.txt")):
    rows = read_tsv(tmp_path / "a/mtop" / f"{split}.tsv")
    assert rows == expected_mtop(name, use_tokens=False)
    assert (tmp_path / "b/mtop" / f"{split}.tsv").read_bytes() == (
        tmp_path / "a/mtop" / f"{split}.tsv").read_bytes()


def test_mtop_wrong_column_count_is_counted_reported_and_skipped(tmp_path, capsys):
  seven_columns = "\t".join(["9", "IN:X", "", "hello there", "misc", "en_XX", "[IN:X ]"])
  bad_json = mtop_line(MTOP["test.txt"][0]).rsplit("\t", 1)[0] + "\t{not json"
  raw = write_mtop(tmp_path / "raw", extra_train_lines=[seven_columns, bad_json])
  assert prepare.main(["--task", "mtop", "--from", str(raw),
                       "--data_dir", str(tmp_path / "out")]) == 0
  out = capsys.readouterr().out
  assert "2 malformed record(s) skipped" in out
  assert f"{raw / 'train.txt'}:2: expected 8 TAB-separated columns" in out
  assert "got 7" in out
  assert f"{raw / 'train.txt'}:3: column 8 must be JSON" in out
  assert read_tsv(tmp_path / "out/mtop/train.tsv") == expected_mtop("train.txt")
  info = json.loads((tmp_path / "out/mtop/prepare_info.json").read_text())
  assert info["malformed_records_skipped"] == 2


def test_strict_mode_stops_and_leaves_previous_output_untouched(tmp_path, capsys):
  raw = write_mtop(tmp_path / "raw")
  run("mtop", tmp_path / "out", raw)
  before = {p.name: p.read_bytes() for p in (tmp_path / "out/mtop").iterdir()}
  write_mtop(raw, extra_train_lines=["only\ttwo"])
  with pytest.raises(common.PrepareError, match=r"train\.txt:2: expected 8 TAB-separated columns"):
    run("mtop", tmp_path / "out", raw, strict=True)
  assert prepare.main(["--task", "mtop", "--from", str(raw), "--strict",
                       "--data_dir", str(tmp_path / "out")]) == 2
  assert "malformed record (strict mode)" in capsys.readouterr().err
  after = {p.name: p.read_bytes() for p in (tmp_path / "out/mtop").iterdir()}
  assert after == before


def test_mtop_missing_files_error_names_expected_layout(tmp_path):
  raw = write_mtop(tmp_path / "raw")
  (raw / "eval.txt").unlink()
  with pytest.raises(common.PrepareError, match=r"eval\.txt") as e:
    run("mtop", tmp_path / "out", raw)
  assert "mtop.zip" in str(e.value) and str(raw / "eval.txt") in str(e.value)
  assert not (tmp_path / "out" / "mtop").exists()


# --- CNN/DailyMail ----------------------------------------------------------------------------
def write_csv(path: pathlib.Path, rows, with_index=True):
  with open(path, "w", encoding="utf-8", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["", "id", "article", "highlights"] if with_index else
                    ["id", "article", "highlights"])
    for i, (id_, article, highlights) in enumerate(rows):
      writer.writerow([i, id_, article, highlights] if with_index else [id_, article, highlights])


EVAL_ROWS = [
    ("a" * 40, "The Article ONE. It has Two sentences.", "First point .\nSecond point ."),
    ("b" * 40, "Another article, with a comma.", "Only one highlight ."),
]


@pytest.fixture
def cnndm_csv_dir(tmp_path):
  sample = shared_data_path("cnn_dailymail", "train_sample_100.csv")
  raw = tmp_path / "csv"
  raw.mkdir()
  os.symlink(sample, raw / "train.csv")
  write_csv(raw / "validation.csv", EVAL_ROWS)
  write_csv(raw / "test.csv", EVAL_ROWS[::-1], with_index=False)
  return raw


def smallest_hash_ids(ids, size, seed):
  return sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())[:size]


def test_cnndm_csv_subset_lowercase_and_joiner(cnndm_csv_dir, tmp_path):
  with open(cnndm_csv_dir / "train.csv", encoding="utf-8", newline="") as f:
    raw_rows = {r["id"]: r for r in csv.DictReader(f)}
  info = run("cnndm_10k", tmp_path / "out", cnndm_csv_dir, cnndm_train_size=10, seed=3)
  assert info["splits"] == {"train": 10, "validation": 2, "test": 2}
  chosen = smallest_hash_ids(list(raw_rows), 10, seed=3)
  expected = [[raw_rows[i]["article"].lower(),
               " ".join(raw_rows[i]["highlights"].split("\n")).lower()] for i in chosen]
  assert read_tsv(tmp_path / "out/cnndm_10k/train.tsv") == expected
  assert read_tsv(tmp_path / "out/cnndm_10k/validation.tsv") == [
      ["the article one. it has two sentences.", "first point . second point ."],
      ["another article, with a comma.", "only one highlight ."]]
  assert read_tsv(tmp_path / "out/cnndm_10k/test.tsv")[0][1] == "only one highlight ."


def test_cnndm_options_case_joiner_prefix_and_seed(cnndm_csv_dir, tmp_path):
  run("cnndm_10k", tmp_path / "a", cnndm_csv_dir, cnndm_train_size=5, cnndm_lowercase=False,
      cnndm_highlight_joiner=" <n> ", cnndm_prefix="summarize: ")
  valid = read_tsv(tmp_path / "a/cnndm_10k/validation.tsv")
  assert valid[0] == ["summarize: The Article ONE. It has Two sentences.",
                      "First point . <n> Second point ."]
  run("cnndm_10k", tmp_path / "b", cnndm_csv_dir, cnndm_train_size=5, seed=0)
  run("cnndm_10k", tmp_path / "c", cnndm_csv_dir, cnndm_train_size=5, seed=1)
  train = lambda d: read_tsv(tmp_path / d / "cnndm_10k/train.tsv")
  assert train("b") != train("c")
  run("cnndm_10k", tmp_path / "c", cnndm_csv_dir, cnndm_train_size=5, seed=0)
  assert train("b") == train("c")


def test_cnndm_incomplete_csv_set_is_an_error(cnndm_csv_dir, tmp_path):
  (cnndm_csv_dir / "test.csv").unlink()
  with pytest.raises(common.PrepareError, match=r"missing .*test\.csv"):
    run("cnndm_10k", tmp_path / "out", cnndm_csv_dir)


STORIES = {
    # url: story text
    "http://cnn.com/a1": "Line one of the article\nSecond line ends with period.\n\n@highlight\n\n"
                         "First highlight\n\n@highlight\n\nSecond highlight!\n",
    "http://cnn.com/a2": "  Padded line  \n\n@highlight\n\nOnly highlight\n",
    "http://cnn.com/empty": "An article without highlights.\n",
    "http://dailymail.co.uk/v1": "Validation story.\n\n@highlight\n\nvalidation point\n",
    "http://dailymail.co.uk/t1": "Test Story\n\n@highlight\n\nTest point.\n",
    **{f"http://dailymail.co.uk/train{i}": f"Train story {i}.\n\n@highlight\n\nPoint {i}\n"
       for i in range(8)},
}
TRAIN_URLS = ["http://cnn.com/a1", "http://cnn.com/a2", "http://cnn.com/empty",
              "http://cnn.com/missing"] + [f"http://dailymail.co.uk/train{i}" for i in range(8)]


def write_story_layout(root: pathlib.Path, archives: bool) -> pathlib.Path:
  lists = root / "url_lists"
  lists.mkdir(parents=True)
  (lists / "all_train.txt").write_text("\n".join(TRAIN_URLS) + "\n")
  (lists / "all_val.txt").write_text("http://dailymail.co.uk/v1\n")
  (lists / "all_test.txt").write_text("http://dailymail.co.uk/t1\n")
  for url, text in STORIES.items():
    publisher = "cnn" if "cnn.com" in url else "dailymail"
    path = root / publisher / "stories" / f"{hashlib.sha1(url.encode()).hexdigest()}.story"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
  if archives:
    for publisher in ("cnn", "dailymail"):
      with tarfile.open(root / f"{publisher}_stories.tgz", "w:gz") as tar:
        tar.add(root / publisher, arcname=publisher)
      shutil.rmtree(root / publisher)
  return root


def test_parse_story_follows_hf_3_0_0_rules():
  article, highlights = cnndm.parse_story(STORIES["http://cnn.com/a1"])
  assert article == "Line one of the article . Second line ends with period."
  assert highlights == ["First highlight .", "Second highlight!"]
  assert cnndm.parse_story(STORIES["http://cnn.com/empty"])[1] == []


@pytest.mark.parametrize("archives", [True, False])
def test_cnndm_story_layout(tmp_path, archives):
  raw = write_story_layout(tmp_path / "raw", archives)
  info = run("cnndm_10k", tmp_path / "out", raw, cnndm_train_size=4, seed=5)
  assert info["notes"]["raw_format"] == "story"
  assert info["notes"]["missing_stories"] == 1
  assert info["notes"]["skipped_empty"] == 1
  assert read_tsv(tmp_path / "out/cnndm_10k/validation.tsv") == [
      ["validation story.", "validation point ."]]
  assert read_tsv(tmp_path / "out/cnndm_10k/test.tsv") == [["test story .", "test point."]]
  usable = {hashlib.sha1(u.encode()).hexdigest(): u for u in TRAIN_URLS
            if u not in ("http://cnn.com/empty", "http://cnn.com/missing")}
  chosen = smallest_hash_ids(list(usable), 4, seed=5)
  expected = []
  for story_id in chosen:
    article, highlights = cnndm.parse_story(STORIES[usable[story_id]])
    expected.append([article.lower(), " ".join(highlights).lower()])
  assert read_tsv(tmp_path / "out/cnndm_10k/train.tsv") == expected
  assert cnndm.parse_story(STORIES["http://cnn.com/a2"]) == ("Padded line .", ["Only highlight ."])


def test_cnndm_story_and_csv_layouts_select_the_same_subset(tmp_path):
  raw = write_story_layout(tmp_path / "raw", archives=False)
  rows = []
  for url in TRAIN_URLS:
    if url in STORIES:
      article, highlights = cnndm.parse_story(STORIES[url])
      if article and highlights:
        rows.append((hashlib.sha1(url.encode()).hexdigest(), article, "\n".join(highlights)))
  csv_dir = tmp_path / "csv"
  csv_dir.mkdir()
  write_csv(csv_dir / "train.csv", rows[::-1])
  write_csv(csv_dir / "validation.csv", EVAL_ROWS)
  write_csv(csv_dir / "test.csv", EVAL_ROWS)
  run("cnndm_10k", tmp_path / "story_out", raw, cnndm_train_size=6, seed=2)
  run("cnndm_10k", tmp_path / "csv_out", csv_dir, cnndm_train_size=6, seed=2)
  assert (tmp_path / "story_out/cnndm_10k/train.tsv").read_bytes() == (
      tmp_path / "csv_out/cnndm_10k/train.tsv").read_bytes()


# --- checksums, missing files, parallel files, downloads ----------------------------------------
def linked_copy(src: pathlib.Path, dst: pathlib.Path, modified: str | None = None) -> pathlib.Path:
  dst.mkdir(parents=True)
  for f in src.iterdir():
    if f.name == modified:
      data = bytearray(f.read_bytes())
      data[10] ^= 1
      (dst / f.name).write_bytes(bytes(data))
    else:
      os.symlink(f, dst / f.name)
  return dst


def test_wrong_checksum_names_file_and_expected_sum(tmp_path):
  raw = linked_copy(shared_data_path("code_translation"), tmp_path / "raw",
                    modified="test.java-cs.txt.cs")
  with pytest.raises(common.PrepareError) as e:
    run("code_translation", tmp_path / "out", raw)
  message = str(e.value)
  assert str(raw / "test.java-cs.txt.cs") in message
  assert "7a863a53cba15473d44ef2f7c99096370a204d4c1a54cc3d81c59d4a305756af" in message
  assert not (tmp_path / "out" / "code_translation").exists()
  info = run("code_translation", tmp_path / "out", raw, skip_checksums=True)
  assert info["splits"]["test"] == 1000


def test_missing_raw_file_names_file_and_official_location(tmp_path):
  raw = linked_copy(shared_data_path("code_translation"), tmp_path / "raw")
  (raw / "valid.java-cs.txt.java").unlink()
  with pytest.raises(common.PrepareError) as e:
    run("code_translation", tmp_path / "out", raw)
  assert str(raw / "valid.java-cs.txt.java") in str(e.value)
  assert "https://raw.githubusercontent.com/microsoft/CodeXGLUE/" in str(e.value)


def test_unparallel_files_are_an_error(tmp_path):
  raw = linked_copy(shared_data_path("retrosynthesis"), tmp_path / "raw")
  lines = (raw / "valid_targets").read_text().split("\n")
  (raw / "valid_targets").unlink()
  (raw / "valid_targets").write_text("\n".join(lines[1:]))
  with pytest.raises(common.PrepareError, match=r"valid_sources has 5004 lines but .*valid_targets "
                     r"has 5003"):
    run("retrosynthesis", tmp_path / "out", raw, skip_checksums=True)


def test_download_failure_names_url_and_suggests_from(tmp_path, monkeypatch):
  monkeypatch.delenv(common.RAW_DATA_DIR_ENV, raising=False)

  def offline(*args, **kwargs):
    raise urllib.error.URLError("network is unreachable")

  monkeypatch.setattr(urllib.request, "urlopen", offline)
  with pytest.raises(common.PrepareError) as e:
    run("webqsp", tmp_path / "out", None)
  assert "https://raw.githubusercontent.com/divinerIU/RankKBQA/" in str(e.value)
  assert "--from DIR" in str(e.value)
  assert not list((tmp_path / "out").rglob("*.json"))


def test_raw_folder_from_environment(tmp_path, monkeypatch):
  monkeypatch.setenv(common.RAW_DATA_DIR_ENV, str(shared_data_path()))
  shared_data_path("webqsp")
  monkeypatch.setattr(urllib.request, "urlopen", None)  # any download attempt would fail
  info = run("webqsp", tmp_path / "out", None)
  assert info["splits"]["test"] == 1639


def test_atomic_write_keeps_previous_file_when_a_row_is_bad(tmp_path):
  common.write_files_atomically(tmp_path, {"train.tsv": "old\tline\n".encode()})
  rows = [("ok", "row"), ("bad", "row", "extra")]
  with pytest.raises(ValueError, match="row 2 is not 2 clean fields"):
    common.write_files_atomically(tmp_path, {
        "validation.tsv": common.tsv_lines([("v", "w")], 2, "validation.tsv"),
        "train.tsv": common.tsv_lines(rows, 2, "train.tsv")})
  assert (tmp_path / "train.tsv").read_text() == "old\tline\n"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["train.tsv"]


def test_field_cleaner_replaces_tabs_and_newlines():
  clean = common.FieldCleaner()
  assert clean("a\tb\r\nc\nd\re") == "a b c d e"
  assert clean("no breaks") == "no breaks"
  assert clean.changed == 1
