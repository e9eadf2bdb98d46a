"""The character-level Penn Treebank, derived from the word-level corpus: Mikolov's
``ptb.char.*`` line for line, 50 symbols, scored in bits per character."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bench.config import make_config
from bench.data.ptb_char import EOL, char_lines, derived_text, load_ptb_char
from bench.errors import BenchError
from bench.run.runner import RunOptions, run


@pytest.fixture(scope="module")
def chars(ptb_dir):
    corpus, lines = load_ptb_char(ptb_dir)
    return corpus, lines


def test_derived_as_mikolovs_files_are_written():
    """Each line stripped, spaces as ``_``, ``<unk>`` five characters; a line end after each."""
    lines = char_lines(" the <unk> rose \n a b\n")
    assert lines == [list("the_<unk>_rose"), list("a_b")]
    assert derived_text(lines) == "t h e _ < u n k > _ r o s e\na _ b\n"


def test_the_published_line_and_symbol_counts(chars):
    """3,370 valid and 3,761 test lines (as in the public ptb.char.valid.txt and test.txt);
    49 training characters plus the line end; every split's symbols in the training text."""
    chars, lines_of = chars
    assert lines_of == {"train": 42_068, "valid": 3_370, "test": 3_761}
    assert chars.vocab_size == 50 and EOL in chars.words and "_" in chars.words
    for split, lines in lines_of.items():
        ids = chars.split(split)
        assert (ids == chars.words.index(EOL)).sum() == lines  # one line end per line
        assert ids.min() >= 0 and ids.max() < 50
    assert len(chars.train) == 5_017_482  # 4,975,414 characters and 42,068 line ends


def test_a_derivation_that_changed_is_refused(ptb_dir, monkeypatch):
    import bench.data.ptb_char as ptb_char

    monkeypatch.setattr(ptb_char, "char_lines", lambda text: [list(line) for line in text.split("\n")])
    with pytest.raises(BenchError, match="derivation changed"):
        ptb_char.load_ptb_char(ptb_dir)


def test_a_run_records_bits_per_character(ptb_dir, tmp_path):
    """The record declares bits per character its main metric; the report divides the
    loss per symbol by ln 2."""
    from bench.report.build import runs_frame

    result = run(make_config("ptb-char-tiny", cell="gru", threads=1),
                 RunOptions(results_dir=str(tmp_path), data_dir=str(ptb_dir), quiet=True))
    record = result.record
    assert result.exit_code == 0 and record["declared"]["main_metric"] == "test_bpc"
    assert record["task"]["vocab_size"] == 50 and not record["declared"]["reports_perplexity"]
    row = runs_frame([record]).iloc[0]
    assert row["test_bpc"] == pytest.approx(record["final"]["test"]["loss"] / math.log(2), rel=1e-12)
    assert np.isfinite(row["test_bpc"]) and 0 < row["test_bpc"] < math.log2(50) + 1
