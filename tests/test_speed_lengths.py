"""bench speed --num-steps: the lengths read strictly, one row per length, the crossing
point computed from the figures (synthetic here), and the figure written beside --out."""
import math
from pathlib import Path

import pytest

from bench.cli import main
from bench.documents import read_document
from bench.errors import BenchError
from bench.measure.crossing import crossing, headline, ratios, sentence
from bench.measure.lengths import parse_lengths
from bench.measure.lengths_cli import plot_path
from bench.report.length_figure import plot_lengths

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_lengths_are_read_ascending():
    assert parse_lengths("1024,64,256", 10_000) == [64, 256, 1024]
    assert parse_lengths(" 64 , 4096", 10_000) == [64, 4096]  # spaces around an item, as every list flag
    assert parse_lengths("7", 10) == [7]


@pytest.mark.parametrize("text, says", [
    ("0", "'0'"), ("-64", "'-64'"), ("1.5", "'1.5'"), ("abc", "'abc'"), ("+64", "'+64'"), ("6_4", "'6_4'"),
    ("64,100001", "'100001'"), ("", "at least one window length"), ("64,,256", "empty window length"),
    ("64,64", "64 twice"), ("64,064", "64 twice"),
])
def test_a_bad_length_is_refused_naming_it(text, says):
    with pytest.raises(BenchError) as caught:
        parse_lengths(text, 100_000)
    assert "--num-steps" in str(caught.value) and says in str(caught.value)


@pytest.mark.parametrize("flags, says", [
    (["--num-steps", "0,8"], "--num-steps must list window lengths"),
    (["--num-steps", "8,x"], "got 'x' in '8,x'"),
    (["--num-steps", "8", "--hidden-size", "0"], "--hidden-size"),
    (["--num-steps", "8", "--batch-size", "-2"], "--batch-size"),
    (["--num-steps", "100000000"], "memory"),  # sized at the longest length before anything runs
])
def test_the_command_refuses_in_one_line_before_measuring(flags, says, capsys):
    code = main(["speed", "--preset", "echo", "--backends", "numpy", "--cells", "rnn", "--threads", "1", *flags])
    err = capsys.readouterr().err
    assert code == 2 and says in err
    assert err.count("\n") == 1 and "round" not in err and "Traceback" not in err


def test_the_figure_beside_out_is_checked_before_measuring(tmp_path, capsys):
    out = tmp_path / "lengths.json"
    plot_path(str(out)).mkdir()  # a directory where the figure would go
    code = main(["speed", "--preset", "echo", "--backends", "numpy", "--cells", "rnn", "--threads", "1",
                 "--num-steps", "4", "--out", str(out)])
    assert code == 2 and "--out's figure" in capsys.readouterr().err and not out.exists()


def test_one_row_per_length_and_the_figure_beside_out(tmp_path, capsys):
    out = tmp_path / "lengths.json"
    code = main(["speed", "--preset", "echo", "--backends", "numpy", "--cells", "rnn", "--rounds", "1", "--steps", "1",
                 "--warmup", "0", "--threads", "1", "--hidden-size", "4", "--batch-size", "2",
                 "--num-steps", "8,4", "--out", str(out)])
    assert code == 0
    kind, table = read_document(out)  # what bench report reads it as: a speed table, valid by its schema
    assert kind == "speed" and table["num_steps"] == [4, 8] and (table["hidden_size"], table["batch_size"]) == (4, 2)
    assert [(r["backend"], r["impl"], r["cell"], r["num_steps"]) for r in table["rows"]] == \
        [("numpy", "cell", "rnn", 4), ("numpy", "cell", "rnn", 8)]
    for row in table["rows"]:
        assert row["train_tok_s"] > 0 and row["eval_tok_s"] > 0
        assert math.isclose(row["train_us_per_token"], 1e6 / row["train_tok_s"])
        assert row["train_peak_rss_mb"] > row["train_added_rss_mb"] >= 0  # the process held memory before training
    figure = tmp_path / table["plot"]
    assert figure == plot_path(str(out)) and figure.read_bytes().startswith(PNG_MAGIC)
    printed = capsys.readouterr().out
    assert "T = 4, 8" in printed and "1 thread" in printed
    # no scan-trained cell and no fused GRU measured: no headline rather than an empty one
    assert table["headline"] is None and "headline" not in printed


def _rows(rates: dict[tuple[str, str, str], dict[int, float]]) -> list[dict]:
    return [{"backend": b, "impl": i, "cell": c, "num_steps": t, "train_tok_s": v}
            for (b, i, c), by_length in rates.items() for t, v in by_length.items()]


def test_the_crossing_is_interpolated_log_log_between_the_lengths_around_it():
    found = crossing({64: 0.5, 256: 2.0, 1024: 4.0})
    assert found.kind == "between" and (found.before, found.after) == (64, 256)
    assert math.isclose(found.at, 128.0)  # log r runs -log 2 to log 2: half-way in log T


def test_the_crossing_is_the_last_rise_above_one():
    """Faster, slower, then faster for good: the crossing that lasts is the second."""
    found = crossing({64: 1.5, 256: 0.8, 1024: 1.2, 4096: 2.0})
    assert (found.kind, found.before, found.after) == ("between", 256, 1024)
    assert 256 < found.at < 1024


def test_no_crossing_and_a_crossing_before_the_first_length():
    assert crossing({64: 0.2, 1024: 0.9, 4096: 0.95}).kind == "never"
    assert crossing({64: 2.0, 1024: 0.9}).kind == "never"  # faster once, slower at the longest
    assert crossing({64: 1.0}).kind == "never"  # as fast is not faster
    assert (crossing({64: 1.1, 4096: 3.0}).kind, crossing({64: 1.1, 4096: 3.0}).after) == ("from", 64)
    assert crossing({}) is None


def test_the_sentences_quote_the_ratios_at_1024_and_4096():
    assert sentence("a", "b", {64: 0.2, 1024: 0.5, 4096: 0.25}) == \
        "a does not overtake b up to T=4,096 (0.50x at T=1,024, 0.25x at T=4,096)"
    assert sentence("a", "b", {64: 0.5, 256: 2.0, 1024: 3.0}) == \
        "a overtakes b between T=64 and T=256 (about T=128 by log-log interpolation; 3.00x at T=1,024)"
    # neither quoted length measured: the longest one's ratio
    assert sentence("a", "b", {64: 1.5, 128: 1.25}) == "a is faster than b at every T measured, from T=64 (1.25x at T=128)"
    assert sentence("a", "b", {}) is None


def test_the_headline_compares_each_scan_backend_with_torchs_fused_gru():
    rows = _rows({("torch", "fused", "gru"): {64: 100.0, 1024: 100.0, 4096: 100.0},
                  ("torch", "scan", "mingru"): {64: 50.0, 1024: 80.0, 4096: 90.0},
                  ("jax", "scan", "mingru"): {64: 50.0, 1024: 200.0, 4096: 400.0},
                  ("torch", "cell", "mingru"): {64: 1000.0, 1024: 1000.0, 4096: 1000.0}})  # not a scan: not compared
    assert ratios(rows, ("jax", "scan", "mingru"), ("torch", "fused", "gru")) == {64: 0.5, 1024: 2.0, 4096: 4.0}
    (line,) = headline(rows, 256)
    assert line.startswith("headline (training tokens/s, same width 256): ")
    assert "mingru torch/scan does not overtake gru torch/fused up to T=4,096 (0.80x at T=1,024, 0.90x at T=4,096)" in line
    assert "mingru jax/scan overtakes gru torch/fused between T=64 and T=1,024 (about T=256" in line
    assert "torch/cell" not in line
    # without the fused GRU there is nothing to compare with
    assert headline([r for r in rows if r["impl"] != "fused"], 256) == []


def test_the_figure_draws_every_measured_row_and_nothing_without_one(tmp_path):
    rows = _rows({("torch", "fused", "gru"): {64: 1e4, 256: 1e4}, ("torch", "scan", "mingru"): {64: 5e3, 256: 2e4}})
    for row in rows:
        row["train_us_per_token"] = 1e6 / row["train_tok_s"]
        row["train_added_rss_mb"] = row["num_steps"] / 4
    path = plot_lengths(rows, tmp_path / "f.png", "title", "a headline")
    assert path == tmp_path / "f.png" and path.read_bytes().startswith(PNG_MAGIC)
    failed = [{"backend": "torch", "impl": "scan", "cell": "mingru", "num_steps": 64, "error": "boom"}]
    assert plot_lengths(failed, tmp_path / "g.png", "title") is None and not (tmp_path / "g.png").exists()
    assert plot_path("results/speed.json") == Path("results/speed-per-token.png")
