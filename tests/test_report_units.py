"""Issue 23, item 7: every column of the report says its unit, a ratio says of what to what, a
gradient ratio that underflowed says so, and wide tables put their key columns first."""
import json
import re

import pandas as pd
import pytest

from bench.config import make_config
from bench.report.build import markdown_table, write_report
from bench.run.runner import RunOptions, run

# header words that name a measured quantity, which must carry its unit in brackets
MEASURED = re.compile(r"_pct|tok_s|tokens/s|gflops|GFLOP|grad.ratio|eval_over_train|_vs_|compile_s|% of")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """report.md of two echo runs (the LSTM's gradient underflowed after training) with this
    machine's GEMM peak, and a speed table of two rows."""
    from bench.measure.roofline import measure_peak, record_peak

    root = tmp_path_factory.mktemp("results")
    for cell in ("rnn", "lstm"):
        run(make_config("echo", cell=cell, epochs=2, total_series_length=1500, threads=1),
            RunOptions(results_dir=str(root), quiet=True))
    record_peak(root, measure_peak(1, n=128, seconds=0.02))
    for path in root.glob("*lstm*.json"):
        record = json.loads(path.read_text())
        record["gradient_norms"][-1]["summary"]["dLT_dh"][-1]["ratio"] = 0.0
        path.write_text(json.dumps(record))
    row = {"train_tok_s": 1000.0, "eval_tok_s": 3000.0, "eval_over_train": 3.0, "train_pct_peak": 40.0,
           "train_pct_ceiling": 50.0, "eval_pct_ceiling": 45.0, "train_vs_torch_fused_lstm": 1.0, "compile_s": 1.5}
    table = {"preset": "echo", "peak_gflops": 100.0, "rounds": 1, "steps": 2, "cpu": "a CPU", "threads": 1,
             "rows": [{"backend": "numpy", "impl": "cell", "cell": "lstm", **row},
                      {"backend": "torch", "impl": "cell", "cell": "lstm", **row, "train_tok_s": 500.0,
                       "train_vs_torch_fused_lstm": 0.5}]}
    (root / "speed").mkdir()
    (root / "speed" / "echo.json").write_text(json.dumps(table))
    write_report(root, root / "out")
    return (root / "out" / "report.md").read_text()


def _headers(text: str) -> list[list[str]]:
    """The header cells of every table in a markdown text."""
    lines = text.splitlines()
    return [[c.strip() for c in line.strip("|").split(" | ")] for line, rule in zip(lines, lines[1:])
            if line.startswith("| ") and rule.startswith("|---")]


def test_every_measured_column_header_names_its_unit(report):
    headers = [h for table in _headers(report) for h in table]
    assert any("tok_s" in h for h in headers) and any("eval_over_train" in h for h in headers)
    bare = [h for h in headers if MEASURED.search(h) and not re.search(r"\(.+\)|tokens/s$", h)]
    assert bare == []
    percent = [h for h in headers if "_pct" in h]
    assert percent and all("%" in h for h in percent), percent
    assert "eval_over_train (eval/train tokens/s)" in headers


def test_per_cent_of_the_peak_is_shown_as_per_cent(report):
    """A run of the compact table shows its share of the GEMM peak with a % sign (0.02% is
    not 2%), under a header that says what it is a share of."""
    (table,) = [t for t in _headers(report) if "train GFLOP/s (% of GEMM peak)" in t]
    column = table.index("train GFLOP/s (% of GEMM peak)")
    rows = [line.strip("|").split(" | ") for line in report.splitlines() if line.startswith(("| rnn | ", "| lstm | "))]
    shares = [row[column].strip() for row in rows if len(row) == len(table)]
    assert shares and all(re.fullmatch(r"[\d.e+-]+%", share) for share in shares), shares
    frame = pd.DataFrame({"cell": ["rnn"], "efficiency_pct": [0.02206]})
    assert markdown_table(frame).splitlines()[0] == "| cell | efficiency_pct (% of GEMM peak) |"


def test_a_gradient_ratio_that_underflowed_is_said_to_have(report):
    frame = pd.DataFrame({"cell": ["rnn", "lstm"], "grad_ratio_final": [0.0, 0.25]})
    assert markdown_table(frame).splitlines()[2:] == ["| rnn | 0 (underflow) |", "| lstm | 0.25 |"]
    lstm = [line for line in report.splitlines() if line.startswith("| lstm | numpy/cell |")]
    assert lstm and all("| 0 (underflow) |" in line for line in lstm), lstm
    (runs,) = [t for t in _headers(report) if t[:4] == ["set", "cell", "backend", "impl"]]
    column = runs.index("grad_ratio_final (first/last step, trained)")
    (every,) = [line.strip("|").split(" | ") for line in report.splitlines() if line.startswith("| . | lstm | ")]
    assert every[column].strip() == "0 (underflow)"
    (gradient,) = [line for line in report.splitlines() if line.startswith("- **Gradient over time")]
    assert "after training, " in gradient and "lstm 0 (underflow)" in gradient
    assert not re.search(r"\b0[,;.)]", gradient.split("after training, ")[1])


def test_the_speed_headline_says_what_its_ratio_is_of(report):
    (speed,) = [line for line in report.splitlines() if line.startswith("- **Speed")]
    assert "(the fastest trains 2.00x the slowest's tokens/s)" in speed
    assert not re.search(r"\(\d+\.\d+x\)", speed)


def test_the_published_table_puts_its_key_columns_first():
    """The distance from the published figure comes right after what the row is, the CPU
    name and the configuration (long text) last."""
    from bench.report.build import PUBLISHED_COLUMNS, RUN_COLUMNS

    assert PUBLISHED_COLUMNS[:4] == ["cell", "backend", "impl", "test_vs_published_pct"]
    assert PUBLISHED_COLUMNS.index("cpu") > PUBLISHED_COLUMNS.index("test_ppl")
    assert RUN_COLUMNS[:5] == ["set", "cell", "backend", "impl", "seed"]
    assert RUN_COLUMNS.index("accuracy") < RUN_COLUMNS.index("configuration") < RUN_COLUMNS.index("cpu")


def test_a_published_table_in_the_report_has_the_distance_beside_the_key(tmp_path):
    from bench.report.build import PUBLISHED_COLUMNS, _markdown

    published = pd.DataFrame([{c: "x" for c in PUBLISHED_COLUMNS} | {"test_ppl": 116.8, "published_test": 114.5, "test_vs_published_pct": 2.0,
                                                                    "status": "completed", "run_id": "r",
                                                                    "config_key": "k"}])
    text = _markdown(pd.DataFrame(), [], [], [], [], tmp_path, published)
    (header,) = [h for h in _headers(text) if "cell" in h]
    assert header[:4] == ["cell", "backend", "impl", "test_vs_published_pct (%, test / published - 1)"]
    assert header[-1] == "cpu" and "run_id" not in header
