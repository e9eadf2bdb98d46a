import shutil

import numpy as np
import pytest

from bench.data import load_ptb, resolve_data_dir
from bench.data.ptb import build_vocab, file_to_word_ids, read_words
from bench.errors import BenchError


def test_token_counts_and_vocabulary(ptb_corpus):
    assert (len(ptb_corpus.train), len(ptb_corpus.valid), len(ptb_corpus.test)) == (929_589, 73_760, 82_430)
    assert ptb_corpus.vocab_size == 10_000
    assert "<eos>" in ptb_corpus.words and "<unk>" in ptb_corpus.words


def test_vocab_sorted_by_count_then_word():
    vocab = build_vocab("b a c a b a d c".split())
    assert list(vocab) == ["a", "b", "c", "d"]
    vocab = build_vocab("z y".split())
    assert list(vocab) == ["y", "z"]


def test_newlines_become_eos(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text(" a b \n c \n")
    assert read_words(path) == ["a", "b", "<eos>", "c", "<eos>"]


def test_unknown_word_maps_to_unk_when_vocabulary_has_it():
    vocab = {"<unk>": 0, "a": 1}
    assert file_to_word_ids(["a", "zebra"], vocab).tolist() == [1, 0]


def test_unknown_word_without_unk_is_a_clear_error():
    with pytest.raises(BenchError, match="'zebra' is not in the training vocabulary"):
        file_to_word_ids(["zebra"], {"a": 0})


def _copy(ptb_dir, tmp_path):
    for name in ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"):
        shutil.copy(ptb_dir / name, tmp_path / name)
    return tmp_path


def test_truncated_file_fails_checksum(ptb_dir, tmp_path):
    directory = _copy(ptb_dir, tmp_path)
    data = (directory / "ptb.valid.txt").read_bytes()
    (directory / "ptb.valid.txt").write_bytes(data[: len(data) // 2])
    with pytest.raises(BenchError, match=r"ptb.valid.txt has sha256 .* \(truncated or altered\)"):
        load_ptb(directory)


def test_altered_file_fails_checksum(ptb_dir, tmp_path):
    directory = _copy(ptb_dir, tmp_path)
    text = (directory / "ptb.test.txt").read_text()
    (directory / "ptb.test.txt").write_text(text.replace(" the ", " teh ", 1))
    with pytest.raises(BenchError, match="truncated or altered"):
        load_ptb(directory)


def test_missing_file_names_the_download_command(tmp_path):
    with pytest.raises(BenchError, match=r"missing; run `python -m bench data ptb`.*--data-dir"):
        load_ptb(tmp_path)


def test_missing_directory_names_the_download_command(tmp_path):
    with pytest.raises(BenchError, match="does not exist; run `python -m bench data ptb`"):
        load_ptb(tmp_path / "nope")


def test_empty_and_binary_files_are_clear_errors(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(BenchError, match="is empty"):
        read_words(tmp_path / "empty.txt")
    (tmp_path / "bin.txt").write_bytes(bytes(range(256)))
    with pytest.raises(BenchError, match="not UTF-8"):
        read_words(tmp_path / "bin.txt")


def test_unchecked_corpus_in_the_same_format_loads(tmp_path):
    for split, text in (("train", "a b a\nc a\n"), ("valid", "a zz\n"), ("test", "b\n")):
        (tmp_path / f"ptb.{split}.txt").write_text(text)
    with pytest.raises(BenchError, match="'zz' is not in the training vocabulary"):
        load_ptb(tmp_path, check=False)


def test_data_dir_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "flag") == tmp_path / "flag"
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("BENCH_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_data_dir(None) == tmp_path / "cache" / "cellbench" / "ptb"


def test_ids_are_int_arrays(ptb_corpus):
    assert ptb_corpus.train.dtype == np.int64
    assert ptb_corpus.train.max() == 9_999


def _archive(ptb_dir, tmp_path, alter=False):
    import tarfile

    path = tmp_path / "simple-examples.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for name in ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"):
            source = ptb_dir / name
            if alter and name == "ptb.test.txt":
                source = tmp_path / name
                source.write_text((ptb_dir / name).read_text()[:-10])
            tar.add(source, arcname=f"./simple-examples/data/{name}")
    return path.as_uri()


def test_download_extracts_and_verifies_the_archive(ptb_dir, tmp_path):
    from bench.data.ptb import download_ptb

    url = _archive(ptb_dir, tmp_path)
    target, why = download_ptb(tmp_path / "cache", url=url)
    assert target == tmp_path / "cache" and why == f"{target} did not exist"
    assert len(load_ptb(target).train) == 929_589


def test_download_of_an_altered_archive_leaves_nothing_behind(ptb_dir, tmp_path):
    from bench.data.ptb import download_ptb

    url = _archive(ptb_dir, tmp_path, alter=True)
    with pytest.raises(BenchError, match="truncated or altered"):
        download_ptb(tmp_path / "cache", url=url)
    assert not (tmp_path / "cache").exists()


def test_download_failure_says_what_to_fetch_extract_and_run(tmp_path):
    from bench.data.ptb import download_ptb

    target = tmp_path / "new" / "cache" / "ptb"
    with pytest.raises(BenchError) as caught:
        download_ptb(target, url=(tmp_path / "missing.tgz").as_uri())
    message = str(caught.value)
    assert message.startswith("cannot download ")
    for part in ("simple-examples.tgz", "extract ptb.train.txt, ptb.valid.txt and ptb.test.txt",
                 "`python -m bench data ptb --data-dir DIR`", "`bench run`", "BENCH_DATA_DIR"):
        assert part in message
    assert not (tmp_path / "new").exists()  # no empty cache folder left behind


def _no_network(monkeypatch):
    import urllib.request

    def refuse(*args, **kwargs):
        raise AssertionError("tried to download a corpus that was already there")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_a_verified_corpus_is_used_offline_and_nothing_is_written(ptb_dir, monkeypatch, capsys):
    """The shared copy is read-only: verifying it must not even probe it for writing."""
    from bench.cli import main

    _no_network(monkeypatch)
    before = sorted(p.name for p in ptb_dir.iterdir())
    assert main(["data", "ptb", "--data-dir", str(ptb_dir)]) == 0
    assert capsys.readouterr().out == f"PTB corpus in {ptb_dir}: already there and verified; nothing downloaded\n"
    assert sorted(p.name for p in ptb_dir.iterdir()) == before


def test_bench_data_dir_is_where_bench_data_looks(ptb_dir, monkeypatch, capsys):
    from bench.cli import main

    _no_network(monkeypatch)
    monkeypatch.setenv("BENCH_DATA_DIR", str(ptb_dir))
    assert main(["data", "ptb"]) == 0
    assert f"PTB corpus in {ptb_dir}: already there" in capsys.readouterr().out


def test_an_altered_file_is_downloaded_again_and_replaced(ptb_dir, tmp_path):
    from bench.data.ptb import download_ptb

    url = _archive(ptb_dir, tmp_path)
    (tmp_path / "corpus").mkdir()
    directory = _copy(ptb_dir, tmp_path / "corpus")
    (directory / "ptb.valid.txt").write_text("not the corpus\n")
    target, why = download_ptb(directory, url=url)
    assert "ptb.valid.txt has sha256" in why and "truncated or altered" in why
    assert len(load_ptb(target).valid) == 73_760


def test_the_tests_find_the_corpus_through_bench_data_dir(monkeypatch, tmp_path):
    from tests.conftest import SHARED_PTB_DIR, ptb_location

    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path))
    assert ptb_location() == (tmp_path, "$BENCH_DATA_DIR")
    monkeypatch.delenv("BENCH_DATA_DIR")
    assert ptb_location()[0] == SHARED_PTB_DIR


@pytest.mark.parametrize("ci,outcome", [("", "1 skipped"), ("true", "1 error")])
def test_an_absent_corpus_skips_with_its_reason_but_fails_under_ci(tmp_path, ci, outcome):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    env = {**os.environ, "BENCH_DATA_DIR": str(tmp_path / "none"), "CI": ci}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "tests/data/test_ptb.py::test_ids_are_int_arrays"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert outcome in done.stdout, done.stdout
    assert f"PTB corpus not found at {tmp_path / 'none'} ($BENCH_DATA_DIR)" in done.stdout
