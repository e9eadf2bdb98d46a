"""The Penn Treebank word-level corpus (Mikolov's split), read as the seed tutorial reads it.

``read_words`` replaces each newline by ``<eos>`` and splits on whitespace; ``build_vocab``
counts the *training* words and sorts by (descending count, word); ``file_to_word_ids``
maps each split to ids. Files are checked against known sha256 sums before use.
"""
from __future__ import annotations

import collections
import gzip
import hashlib
import io
import os
import tarfile
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import interrupts
from bench.errors import BenchError
from bench.storage import not_a_directory, open_regular, prepare_writable_dir, writing

SPLITS = ("train", "valid", "test")
SHA256 = {
    "train": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
    "valid": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "test": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
}
ARCHIVE_URL = "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz"
DOWNLOAD_HINT = ("run `python -m bench data ptb` to download it, or pass --data-dir DIR (or set BENCH_DATA_DIR=DIR), "
                 "DIR holding ptb.train.txt, ptb.valid.txt and ptb.test.txt")
# Where a download cannot reach the archive: what to fetch, what to extract, which command checks it.
OFFLINE_HINT = ("offline, fetch simple-examples.tgz elsewhere, extract ptb.train.txt, ptb.valid.txt and ptb.test.txt "
                "from its simple-examples/data/ into a directory DIR and run `python -m bench data ptb --data-dir DIR` "
                "to verify them; `bench run`, `matrix` and `sweep` then take --data-dir DIR (or set BENCH_DATA_DIR=DIR)")
EOS, UNK = "<eos>", "<unk>"


def file_name(split: str) -> str:
    return f"ptb.{split}.txt"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``--data-dir``, else ``$BENCH_DATA_DIR``, else the per-user cache (``~/.cache/cellbench/ptb``)."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get("BENCH_DATA_DIR"):
        return Path(os.environ["BENCH_DATA_DIR"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "cellbench" / "ptb"


def read_words(path: Path) -> list[str]:
    try:
        with open_regular(path) as f:
            raw = f.read()
    except OSError as exc:
        raise BenchError(f"cannot read {path}: {exc.strerror}; {DOWNLOAD_HINT}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BenchError(f"{path} is not UTF-8 text (binary file?); {DOWNLOAD_HINT}") from exc
    words = text.replace("\n", f" {EOS} ").split()
    if not words:
        raise BenchError(f"{path} is empty; {DOWNLOAD_HINT}")
    return words


def build_vocab(words: list[str]) -> dict[str, int]:
    """Ids by descending count, ties broken by the word itself (the seed's order)."""
    counts = collections.Counter(words)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return {word: i for i, (word, _) in enumerate(ordered)}


def file_to_word_ids(words: list[str], vocab: dict[str, int], source: str = "corpus") -> np.ndarray:
    """Map words to ids; a word outside the vocabulary becomes ``<unk>`` when the vocabulary
    has it, else it is an error (a corpus that does not match its vocabulary)."""
    unk = vocab.get(UNK)
    ids = np.empty(len(words), dtype=np.int64)
    for k, word in enumerate(words):
        i = vocab.get(word, unk)
        if i is None:
            raise BenchError(f"{source}: word {word!r} is not in the training vocabulary, which has no {UNK}")
        ids[k] = i
    return ids


@dataclass(frozen=True)
class Corpus:
    """Token ids of the three splits and the vocabulary (id -> word for printing)."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    words: tuple[str, ...]

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def split(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def to_words(self, ids: np.ndarray) -> list[str]:
        return [self.words[i] for i in np.asarray(ids).ravel()]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open_regular(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(data_dir: Path) -> None:
    """Every file present, readable and matching its sha256: a truncated or altered file is an error."""
    for split in SPLITS:
        path = data_dir / file_name(split)
        if not path.exists():
            raise BenchError(f"PTB corpus file {path} is missing; {DOWNLOAD_HINT}")
        try:
            actual = sha256_of(path)
        except OSError as exc:
            raise BenchError(f"cannot read PTB corpus file {path} ({exc.strerror or exc}); {DOWNLOAD_HINT}") from exc
        if actual != SHA256[split]:
            raise BenchError(
                f"{path} has sha256 {actual[:12]}…, expected {SHA256[split][:12]}… (truncated or altered); "
                f"delete it and {DOWNLOAD_HINT}"
            )


def load_ptb(data_dir: str | os.PathLike | None = None, check: bool = True) -> Corpus:
    """Read and verify the three splits. ``check=False`` skips the sha256 check (for corpora
    other than Mikolov's PTB in the same format)."""
    directory = resolve_data_dir(data_dir)
    if not directory.is_dir():
        raise BenchError(f"PTB corpus directory {directory} {not_a_directory(directory)}; {DOWNLOAD_HINT}")
    if check:
        verify(directory)
    words = {split: read_words(directory / file_name(split)) for split in SPLITS}
    vocab = build_vocab(words["train"])
    ids = {split: file_to_word_ids(words[split], vocab, file_name(split)) for split in SPLITS}
    return Corpus(ids["train"], ids["valid"], ids["test"], tuple(vocab))


def download_ptb(data_dir: str | os.PathLike | None = None, url: str = ARCHIVE_URL) -> tuple[Path, str | None]:
    """Make sure the data directory holds the verified corpus: ``(directory, None)`` when it
    already does (nothing is fetched, so this works offline), else fetch
    ``simple-examples.tgz``, extract the three files and verify them, and return
    ``(directory, why it was fetched)``. Files are moved into place only after their sums
    check out; a download that fails leaves no directory it created behind."""
    directory = resolve_data_dir(data_dir)
    why = corpus_problem(directory)
    if why is None:
        return directory, None
    created = _missing_ancestors(directory)
    try:
        prepare_writable_dir(directory, "--data-dir")  # before a download it could not keep
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                blocks = []  # a stop looked for between blocks: the signal handler only notes one
                while block := response.read(1 << 16):
                    interrupts.check()
                    blocks.append(block)
                archive = b"".join(blocks)
        except OSError as exc:
            raise BenchError(f"cannot download {url}: {exc}; {OFFLINE_HINT}") from exc
        try:
            files = _read_archive(archive, url)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise BenchError(f"{url} did not give a readable .tgz archive ({exc}); {OFFLINE_HINT}") from exc
        writing("the corpus into", directory, lambda: _install(files, directory))
    except BaseException:
        _remove_if_empty(created)
        raise
    return directory, why


def corpus_problem(directory: Path) -> str | None:
    """Why ``directory`` does not hold the verified corpus, or None when it does."""
    if not directory.is_dir():
        return f"{directory} did not exist"
    try:
        verify(directory)
    except BenchError as exc:
        return str(exc).split("; ")[0]  # the finding, without the advice to download
    return None


def _missing_ancestors(directory: Path) -> list[Path]:
    """``directory`` and those of its parents that do not exist yet, deepest first: what
    creating it would add."""
    missing = []
    for path in (directory, *directory.parents):
        if os.path.lexists(path):
            break
        missing.append(path)
    return missing


def _remove_if_empty(directories: list[Path]) -> None:
    """Remove the directories a failed download created, deepest first, as long as each is
    empty (something else may have written into one meanwhile: then it stays)."""
    for path in directories:
        try:
            path.rmdir()
        except OSError:
            return


def _read_archive(archive: bytes, url: str) -> dict[str, bytes]:
    """The three files' contents from ``simple-examples.tgz``."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        members = {m.name.lstrip("./"): m for m in tar.getmembers() if m.isfile()}
        files = {}
        for split in SPLITS:
            member = members.get(f"simple-examples/data/{file_name(split)}")
            extracted = tar.extractfile(member) if member else None
            if extracted is None:
                raise BenchError(f"{url} has no simple-examples/data/{file_name(split)}: not the PTB archive")
            files[split] = extracted.read()
    return files


def _install(files: dict[str, bytes], directory: Path) -> None:
    """Write the files beside the corpus and move them into place only once their sums check out."""
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        for split, data in files.items():
            (Path(tmp) / file_name(split)).write_bytes(data)
        verify(Path(tmp))
        for split in SPLITS:
            os.replace(Path(tmp) / file_name(split), directory / file_name(split))
