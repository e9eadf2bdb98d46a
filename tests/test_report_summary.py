"""The report's answers first: headlines generated from records, compact tables per task,
seeds pooled (and only seeds), each cell's PTB-style sample side by side, and report.html
as one self-contained page (checked in a headless browser where one is installed)."""
from __future__ import annotations

import base64
import copy
import html.parser
import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from bench.report import mdtext
from bench.config import make_config
from bench.report.build import runs_frame, write_report
from bench.run.runner import RunOptions, run
from bench.report.seeds import pool, within_spread


@pytest.fixture(scope="module")
def record(tmp_path_factory) -> dict[str, Any]:
    """A real record, as the runner writes it today."""
    directory = tmp_path_factory.mktemp("summary")
    result = run(make_config("echo", epochs=2, total_series_length=1500), RunOptions(results_dir=str(directory), quiet=True))
    return json.loads(result.record_path.read_text())


def variant(record: dict[str, Any], *, run_id: str, cell: str = "lstm", backend: str = "numpy", impl: str = "cell",
            seed: int = 0, accuracy: float | None = None, **config: Any) -> dict[str, Any]:
    r = copy.deepcopy(record)
    r["run_id"] = run_id
    r["config"].update(cell=cell, seed=seed, **config)
    r["backend"].update(name=backend, impl=impl)
    if accuracy is not None:
        r["final"]["test"]["accuracy"] = accuracy
    return r


def write(path: Path, document: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def headlines(text: str) -> str:
    start = text.index("## Headlines")
    return text[start:text.index("\n## ", start + 1)]


def answer(text: str) -> str:
    """The answer section, which opens the report (before the headlines)."""
    start = text.index("## The answer")
    assert start < text.index("## Headlines") and text.count("\n## ", 0, start) == 0
    return text[start:text.index("\n## ", start + 1)]


# --- seeds: pooled, and nothing else is ----------------------------------------------

def test_runs_differing_only_in_seed_are_pooled_as_mean_std_and_n(record, tmp_path):
    for seed, accuracy in enumerate((0.90, 0.92, 0.94)):
        write(tmp_path / "r" / f"lstm-{seed}.json", variant(record, run_id=f"l{seed}", seed=seed, accuracy=accuracy))
    out = write_report(tmp_path / "r", tmp_path / "out")
    (row,) = out["pooled"].to_dict("records")
    assert (row["n"], row["seeds"]) == (3, "0, 1, 2")
    assert row["accuracy"] == pytest.approx(0.92) and row["accuracy_std"] == pytest.approx(0.02)
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| lstm | numpy/cell | 0.92 ± 0.02 | 3 of 3 |" in text
    assert "seeds 0, 1, 2" in text


def test_a_rerun_of_one_seed_replaces_that_seed_only(record, tmp_path):
    write(tmp_path / "r" / "a.json", variant(record, run_id="old", seed=0, accuracy=0.5))
    newer = variant(record, run_id="new", seed=0, accuracy=0.9)
    newer["started_at"] = "2099-01-01T00:00:00+00:00"
    write(tmp_path / "r" / "b.json", newer)
    write(tmp_path / "r" / "c.json", variant(record, run_id="other", seed=1, accuracy=0.7))
    (row,) = write_report(tmp_path / "r", tmp_path / "out")["pooled"].to_dict("records")
    assert row["n"] == 2 and row["accuracy"] == pytest.approx(0.8)


SETTINGS = {"learning_rate": [0.3, 0.1], "batch_size": [5, 6], "hidden_size": [4, 8], "echo_step": [3, 2],
            "threads": [1, 2]}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["lstm", "rnn"]), st.sampled_from(["numpy", "torch"]),
                          st.integers(0, 3), st.dictionaries(st.sampled_from(sorted(SETTINGS)), st.integers(0, 1)),
                          st.sampled_from(["a", "b"])),
                min_size=1, max_size=12))
def test_pooling_never_mixes_runs_that_differ_in_anything_but_seed(record, runs):
    records = []
    for i, (cell, backend, seed, chosen, set_name) in enumerate(runs):
        r = variant(record, run_id=f"run{i}", cell=cell, backend=backend, seed=seed,
                    **{k: SETTINGS[k][v] for k, v in chosen.items()})
        r["_set"], r["_path"] = set_name, f"{set_name}/run{i}.json"
        r["started_at"] = f"2026-01-01T00:00:{i:02d}+00:00"
        records.append(r)
    pooled = pool(runs_frame(records))
    by_path = {r["_path"]: r for r in records}
    for row in pooled.to_dict("records"):
        members = [by_path[p] for p in row["paths"]]
        unseeded = {json.dumps({k: v for k, v in m["config"].items() if k != "seed"}, sort_keys=True) for m in members}
        assert len(unseeded) == 1 and len({m["_set"] for m in members}) == 1
        assert len({m["config"]["seed"] for m in members}) == row["n"] == len(members)
    # every seed of every distinct experiment is in exactly one row
    experiments = {(r["_set"], json.dumps({k: v for k, v in r["config"].items() if k != "seed"}, sort_keys=True),
                    r["backend"]["name"]) for r in records}
    assert len(pooled) == len(experiments)


def test_within_spread_needs_a_spread_and_compares_with_both():
    assert within_spread(1.0, None, 2.0, 0.1) is None
    assert within_spread(1.0, 0.3, 1.5, 0.3) is True
    assert within_spread(1.0, 0.1, 1.5, 0.1) is False


# --- headlines --------------------------------------------------------------------------

def test_the_answer_table_ranks_cells_and_headlines_state_agreement_and_say_one_seed_is_not_enough(record, tmp_path):
    root = tmp_path / "r"
    write(root / "l-numpy.json", variant(record, run_id="ln", accuracy=0.95))
    write(root / "l-torch.json", variant(record, run_id="lt", backend="torch", impl="fused", accuracy=0.94))
    write(root / "r-numpy.json", variant(record, run_id="rn", cell="rnn", accuracy=0.60))
    report = (write_report(root, tmp_path / "out")["out"] / "report.md").read_text()
    table = answer(report)
    row = next(line for line in table.splitlines() if line.startswith("| echo |"))
    assert ("| test accuracy | lstm 0.95 (numpy/cell) | rnn 0.6 | 0.35 higher | 1, 1 | n/a (one seed) "
            "| one seed: not tested against seed noise |") in row
    assert "](#" in row  # links to its table
    text = headlines(report)
    assert "**Backends agree (echo, set `.`).** lstm test accuracy 0.94 to 0.95 over 2 backend/impls (1.06%)" in text
    assert "**Gradient over time (echo).**" in text and "lstm" in text and "rnn" in text
    assert "**How sure.** Every run above is one seed" in text
    # every sentence links to its evidence
    for line in text.splitlines():
        if line.startswith("- **") and "How sure" not in line:
            assert "](#" in line, line


@pytest.mark.parametrize("rnn_accuracies, verdict", [
    ((0.93, 0.95, 0.91), "within the seed spread: not ranked"),
    ((0.50, 0.52, 0.48), "apart by more than the seed spreads"),
])
def test_a_gap_within_the_seed_spread_is_flagged(record, tmp_path, rnn_accuracies, verdict):
    root = tmp_path / "r"
    for seed, (lstm, rnn) in enumerate(zip((0.94, 0.96, 0.92), rnn_accuracies)):
        write(root / f"l{seed}.json", variant(record, run_id=f"l{seed}", seed=seed, accuracy=lstm))
        write(root / f"r{seed}.json", variant(record, run_id=f"r{seed}", cell="rnn", seed=seed, accuracy=rnn))
    report = (write_report(root, tmp_path / "out")["out"] / "report.md").read_text()
    table = answer(report)
    assert verdict in table
    assert "lstm 0.94 ± 0.02 (numpy/cell)" in table
    # the winner's 95% interval: mean ± t(0.975, n - 1) s / sqrt(n), seeds 0.94, 0.96, 0.92
    from scipy import stats
    half = stats.t.ppf(0.975, 2) * 0.02 / 3 ** 0.5
    assert f"{0.94 - half:.5g} to {0.94 + half:.5g}" in table and "| 3, 3 |" in table
    assert "repeat each run over up to 3 seeds" in headlines(report)


def test_bench_report_prints_the_answers_not_the_detail_table(record, tmp_path, capsys):
    from bench.cli import main

    write(tmp_path / "r" / "l.json", variant(record, run_id="l", accuracy=0.9))
    write(tmp_path / "r" / "n.json", variant(record, run_id="n", cell="rnn", accuracy=0.5))
    assert main(["report", str(tmp_path / "r"), "--out", str(tmp_path / "out")]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("## The answer") and "## Headlines" in out and "## Results by task" in out
    assert "## Every run" not in out
    assert "<a id=" not in out and "\n\n\n" not in out
    assert "report.html" in err and (tmp_path / "out" / "report.html").is_file()


def test_no_records_no_headlines(tmp_path):
    (tmp_path / "empty").mkdir()
    write_report(tmp_path / "empty", tmp_path / "out")
    assert "## Headlines" not in (tmp_path / "out" / "report.md").read_text()


def test_a_configuration_that_differs_is_named_not_ranked(record, tmp_path):
    root = tmp_path / "r"
    write(root / "main" / "l.json", variant(record, run_id="l", accuracy=0.9))
    write(root / "main" / "r.json", variant(record, run_id="r", cell="rnn", accuracy=0.5))
    write(root / "tuned" / "r.json", variant(record, run_id="rt", cell="rnn", accuracy=0.97, learning_rate=0.1))
    text = answer((write_report(root, tmp_path / "out")["out"] / "report.md").read_text())
    assert "in other configurations (settings differ, so not ranked here): rnn 0.97 in set `tuned`" in text


# --- samples side by side --------------------------------------------------------------

def test_each_cells_best_sample_side_by_side_with_the_right_words_in_bold(record, tmp_path):
    root = tmp_path / "r"
    words = {"input_words": ["the", "cat", "<unk>"], "target_words": ["cat", "<unk>", "sat"]}
    for cell, predicted, ppl in (("lstm", ["cat", "<unk>", "the"], 100.0), ("rnn", ["the", "the", "the"], 300.0),
                                 ("rnn", ["cat", "the", "the"], 200.0)):
        r = variant(record, run_id=f"{cell}-{ppl:.0f}", cell=cell)
        r["sample"].update(**words, predicted_words=predicted)
        r["final"]["test"]["perplexity"] = ppl
        write(root / f"{cell}-{ppl:.0f}.json", r)
    text = (write_report(root, tmp_path / "out")["out"] / "report.md").read_text()
    section = text[text.index("## What each cell predicts"):]
    assert "| input | true next | lstm | rnn |" in section
    # <unk> is a word, escaped so neither markdown nor the HTML page takes it for a tag
    assert "| the | cat | **cat** | **cat** |" in section
    assert "| cat | &lt;unk&gt; | **&lt;unk&gt;** | the |" in section
    assert "rnn: run `rnn-200`" in section and "rnn-300" not in section
    assert "Right in these 3 words: lstm 2/3, rnn 1/3." in section


# --- report.html --------------------------------------------------------------------------

class _Page(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tags: list[str] = []
        self.references: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        for name in ("href", "src"):
            if values.get(name) and not values[name].startswith(("#", "data:")):
                self.references.append(values[name])


@pytest.fixture(scope="module")
def page(record, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("html") / "results"
    write(root / "<script>alert(1)<script>" / "l.json", variant(record, run_id="l"))
    write(root / "<script>alert(1)<script>" / "r.json", variant(record, run_id="r", cell="rnn"))
    out = write_report(root)
    assert out["figures"]
    return root / "report.html"


def test_the_html_page_embeds_every_plot_and_needs_nothing_else(page):
    parsed = _Page()
    parsed.feed(page.read_text(encoding="utf-8"))
    markdown = (page.parent / "report.md").read_text()
    assert len(parsed.images) == markdown.count("![") >= 3
    for source in parsed.images:
        assert source.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))) as image:
            assert image.format == "PNG" and image.size[0] > 100
    assert parsed.references == []  # no stylesheet, script, font or link elsewhere
    assert "script" not in parsed.tags and "table" in parsed.tags and "h2" in parsed.tags
    assert "&lt;script&gt;alert(1)&lt;script&gt;" in page.read_text()  # the hostile set name is text


def test_the_html_page_loads_every_image_in_a_headless_browser(page, tmp_path):
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no headless browser installed (apt-get install chromium); the structure test above still runs")
    probe = tmp_path / "probe.html"
    # the page has no scripts of its own; the probe adds one that counts the images that decoded
    probe.write_text(page.read_text().replace("</body>", "<script>document.body.setAttribute('data-loaded', "
                     "Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length + '/' + "
                     "document.images.length)</script></body>"))
    result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", probe.as_uri()],
                            capture_output=True, text=True, timeout=120)
    loaded = result.stdout.split('data-loaded="', 1)[1].split('"', 1)[0]
    n = page.read_text().count("<img")
    assert loaded == f"{n}/{n}", result.stderr[-2000:]


# --- record strings are text, in markdown and HTML ---------------------------------------

@pytest.mark.parametrize("raw, shown", [
    ("<unk>", "&lt;unk&gt;"), ("a|b", "a\\|b"), ("[x](javascript:alert(1))", "\\[x\\](javascript:alert(1))"),
    ("*bold*", "\\*bold\\*"), ("`tick`", "\\`tick\\`"), ("two\nlines", "two lines"), ("AT&T", "AT&amp;T"),
])
def test_markdown_text_escapes_what_would_be_markup(raw, shown):
    assert mdtext.text(raw) == shown


@pytest.mark.parametrize("raw, shown", [
    ("plain", "`plain`"), ("a`b", "`` a`b ``"), ("a``b", "` a``b `"), ("`a` ``b``", "``` `a` ``b`` ```"),
    ("`", "`` ` ``"), ("a|b", "a\\|b"), ("", "` `"), ("bell\x07", "`bell\\x07`"),
])
def test_markdown_code_fences_past_every_backtick_run_in_the_value(raw, shown):
    assert mdtext.code(raw) == shown


class _Rendered(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text += data


_MARKUP = st.text(alphabet=st.sampled_from(list("`*_[]()<>!#&|\\-+.=:;'\" 1ax/\n\t\x00\x02\x03\x07\u202e")), max_size=24)


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(_MARKUP, st.text(max_size=12)), where=st.sampled_from(["list", "cell", "sentence"]),
       as_code=st.booleans())
def test_any_string_renders_as_itself_and_makes_no_markup(value, where, as_code):
    """Whatever the string, Python-Markdown (as report.html uses it) shows it as written, on
    one line (invisible characters as escapes), and makes no element of it but the code span."""
    import markdown

    shown = mdtext.code(value) if as_code else mdtext.text(value)
    document = {"list": f"- {shown}", "cell": f"| a | b |\n|---|---|\n| {shown} | x |",
                "sentence": f"Set {shown}, then more."}[where]
    page = _Rendered()
    page.feed(markdown.markdown(document, extensions=["tables"]))
    framing = {"list": {"ul", "li"}, "cell": {"table", "thead", "tbody", "tr", "th", "td"}, "sentence": {"p"}}[where]
    assert set(page.tags) <= framing | {"code"}, (document, page.tags)
    expected = mdtext.one_line(value)
    assert expected in page.text, (document, page.text)
    if where == "cell":
        assert page.tags.count("td") == 2, document  # the value stayed in its cell


# --- sweeps as people read them ------------------------------------------------------------

def _adding_sweep() -> pd.DataFrame:
    return pd.DataFrame({
        "adding_length": [50, 100],
        "gru numpy/cell loss_vs_baseline": [0.028, 0.5], "rnn numpy/cell loss_vs_baseline": [1.02, 0.99],
        "gru numpy/cell solved_at_update": [1300.0, None], "rnn numpy/cell solved_at_update": [None, None],
        "gru numpy/cell grad_ratio_init": [2.5e-10, 3e-19], "rnn numpy/cell grad_ratio_init": [1.8e-10, 9.5e-20],
        "gru numpy/cell grad_ratio_final": [0.3, 0.31], "rnn numpy/cell grad_ratio_final": [4e-7, 1.5e-7],
    })


def test_a_sweep_reads_as_cells_by_values_with_the_solving_update():
    from bench.report.build import sweep_pivots

    (result_title, result), (gradient_title, gradient) = sweep_pivots("adding_length", _adding_sweep())
    assert list(result.columns) == ["cell", "backend/impl", "adding_length = 50", "adding_length = 100"]
    assert result.iloc[0].tolist() == ["gru", "numpy/cell", "0.028 (1,300)", "0.5"]
    assert result.iloc[1].tolist() == ["rnn", "numpy/cell", "1.02", "0.99"]
    assert "at initialisation → after training" in gradient_title
    assert gradient.iloc[0].tolist()[2:] == ["2.50e-10 → 0.3", "3.00e-19 → 0.31"]


def test_memory_headline_names_the_largest_value_solved_and_the_closest_miss():
    from bench.report.headlines import solved_sentences

    about = {"param": "adding_length", "configuration": "adding, threads=1", "task": "adding", "anchor": "x"}
    (line,) = solved_sentences([(about, _adding_sweep())], None)
    assert "the gru solved up to adding_length = 50 (numpy/cell, 0.028 x the baseline)" in line
    assert "the rnn solved none (closest: 0.99 x the baseline at adding_length = 100)" in line
    assert line.endswith("([table](#x))")


def test_the_answer_table_gives_a_sweep_the_largest_length_each_cell_reached(record, tmp_path):
    root = tmp_path / "r"
    remembered = {"lstm": (1.0, 1.0, 0.995), "rnn": (0.999, 0.7, 0.6)}
    for cell, accuracies in remembered.items():
        for lag, accuracy in zip((1, 3, 5), accuracies):
            r = variant(record, run_id=f"{cell}{lag}", cell=cell, accuracy=accuracy, echo_step=lag)
            r["tag"] = "sweep:echo_step"
            write(root / f"{cell}{lag}.json", r)
    table = answer((write_report(root, tmp_path / "out")["out"] / "report.md").read_text())
    row = next(line for line in table.splitlines() if line.startswith("| echo |"))
    assert "| largest echo_step remembered | lstm 5 (numpy/cell) | rnn 1 | 5x the runner-up's echo_step |" in row
    assert "one seed per value: not tested against seed noise" in row
