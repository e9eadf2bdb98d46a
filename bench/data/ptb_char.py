"""The character-level Penn Treebank (Mikolov's ``ptb.char.*``), derived from the verified
word-level files rather than read from a second download.

Mikolov's character files are the word-level text rewritten: each line stripped, spaces
written ``_``, one character per symbol (``<unk>`` is the five characters ``< u n k >``).
Derived that way, every line of two public copies of ``ptb.char.valid.txt`` and
``ptb.char.test.txt`` matches ours, symbol for symbol (3,370 and 3,761 lines). Each line
ends with the symbol ``<eol>``: 49 characters in the training text plus the line end make
the 50 symbols of the published vocabulary. A model is scored on every symbol, the line
ends included (5,017,482 training symbols); papers that leave the line ends out divide by
1.7% fewer. The derived text is checked against sha256 sums too, so a change of the
derivation cannot pass unnoticed.
"""
from __future__ import annotations

import collections
import hashlib
from pathlib import Path

import numpy as np

from bench.data.ptb import SPLITS, Corpus, file_name, resolve_data_dir, verify
from bench.errors import BenchError
from bench.storage import open_regular

EOL = "<eol>"
SPACE = "_"
# sha256 of each derived split written as Mikolov's files are: its symbols joined by one
# space, a newline after each line (the line-end symbol not written)
DERIVED_SHA256 = {
    "train": "53747d839625e6b9dce9157acef77b20d81754f26ef708807f7892ce90599313",
    "valid": "de493d0c44eeebd91f68d7fb6e73e9305b8523e11c2563ebe91e121f87f3b349",
    "test": "720d2a61c516b69cc668643a52df66928e06c42774c6d87db5cc0cb39e87803f",
}


def char_lines(text: str) -> list[list[str]]:
    """Each line of a word-level file as Mikolov's character files hold it (no line end)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [list(line.strip().replace(" ", SPACE)) for line in lines]


def derived_text(lines: list[list[str]]) -> str:
    """The lines written as ``ptb.char.*.txt`` is: symbols separated by spaces, one line each."""
    return "".join(" ".join(line) + "\n" for line in lines)


def load_ptb_char(data_dir: str | Path | None = None) -> tuple[Corpus, dict[str, int]]:
    """The three splits, derived from the verified word-level corpus and checked, as a
    :class:`~bench.data.ptb.Corpus` of symbols; and the lines of each split."""
    directory = resolve_data_dir(data_dir)
    verify(directory)
    lines = {}
    for split in SPLITS:
        with open_regular(directory / file_name(split)) as f:
            lines[split] = char_lines(f.read().decode("utf-8"))
        digest = hashlib.sha256(derived_text(lines[split]).encode("utf-8")).hexdigest()
        if digest != DERIVED_SHA256[split]:
            raise BenchError(f"the character-level {split} split derived from {directory} has sha256 {digest[:12]}…, "
                             f"expected {DERIVED_SHA256[split][:12]}…: the derivation changed")
    counts = collections.Counter(symbol for line in lines["train"] for symbol in line)
    counts[EOL] = len(lines["train"])
    symbols = tuple(symbol for symbol, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    ids = {symbol: i for i, symbol in enumerate(symbols)}

    def encode(split: str) -> np.ndarray:
        try:
            return np.fromiter((ids[s] for line in lines[split] for s in (*line, EOL)), dtype=np.int64)
        except KeyError as exc:  # the checksums make this unreachable; a message, should they ever not
            raise BenchError(f"character {exc.args[0]!r} of the {split} split is not in the training text") from exc

    return (Corpus(encode("train"), encode("valid"), encode("test"), symbols),
            {split: len(lines[split]) for split in SPLITS})
