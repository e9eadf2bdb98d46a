import json

import pytest

from bench.config import make_config
from bench.fanout.jobs import Outcome, print_outcomes
from bench.report.build import load_records, runs_frame, write_report
from bench.run.runner import RunOptions, run


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    directory = tmp_path_factory.mktemp("results")
    for cell in ("rnn", "lstm"):
        run(make_config("echo", cell=cell, epochs=2, total_series_length=1500), RunOptions(results_dir=str(directory), quiet=True))
    return directory


def test_bad_files_are_listed_and_skipped(results, tmp_path):
    for path in results.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    good = json.loads(next(results.glob("*.json")).read_text())
    (tmp_path / "truncated.json").write_text(json.dumps(good)[:200])
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "foreign.json").write_text(json.dumps({"hello": "world"}))
    (tmp_path / "old.json").write_text(json.dumps({**good, "schema_version": 0}))
    records, bad = load_records(tmp_path)
    assert len(records) == 2
    assert sorted(p.rsplit("/", 1)[-1] for p, _ in bad) == ["empty.json", "foreign.json", "old.json", "truncated.json"]
    assert any("schema version 0" in reason for _, reason in bad)


def test_runs_frame_has_one_row_per_run_with_the_comparison_columns(results):
    records, _ = load_records(results)
    frame = runs_frame(records)
    assert len(frame) == 2
    assert set(frame["cell"]) == {"rnn", "lstm"}
    assert (frame["train_tok_s"] > 0).all()
    # at initialisation the plain RNN passes far less of the last step's error back
    ratios = frame.set_index("cell")["grad_ratio_init"]
    assert ratios["rnn"] < ratios["lstm"] / 100


def test_write_report_makes_markdown_csv_and_plots(results, tmp_path):
    out = write_report(results, tmp_path)
    rows = [line for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("| . | ")]
    assert len(rows) == 2 and all("| echo, epochs=2, total_series_length=1500 |" in row for row in rows)
    assert (tmp_path / "report.csv").exists()
    names = {p.name for p in tmp_path.glob("*.png")}
    group = "echo-epochs-2-total_series_length-1500"  # the root set is named by its configuration
    assert {f"gradients-{group}.png", f"curves-{group}.png", f"throughput-{group}.png"} <= names
    assert {f"echo-sample-{group}-rnn.png", f"echo-sample-{group}-lstm.png"} <= names
    assert out["records"] == 2


def test_matrix_summary_fails_when_a_combination_failed(capsys):
    assert print_outcomes([Outcome("a", "completed", 1.0), Outcome("b", "skipped", 0.0, "no torch")]) == 0
    assert print_outcomes([Outcome("a", "completed", 1.0), Outcome("b", "diverged", 1.0)]) == 3
    assert "diverged" in capsys.readouterr().out


def test_matrix_carries_on_past_a_failing_combination(monkeypatch):
    import bench.fanout.jobs as matrix

    calls = []

    def fake_run_one(label, argv, quiet=False):
        calls.append(label)
        return Outcome(label, "failed (exit 1)" if len(calls) == 1 else "completed", 0.1)

    monkeypatch.setattr(matrix, "run_one", fake_run_one)
    outcomes = matrix.run_matrix(["numpy"], ["rnn", "lstm"], None, ["--epochs", "1"])
    assert [o.status for o in outcomes] == ["failed (exit 1)", "completed"]
    assert calls == ["numpy/cell rnn", "numpy/cell lstm"]


def test_sweep_runs_each_value_in_its_own_process_and_tags_records(tmp_path):
    from bench.fanout.jobs import run_sweep

    outcomes = run_sweep("echo_step", ["1", "2"], ["rnn"], "numpy", None,
                         ["--epochs", "1", "--total-series-length", "1500", "--results-dir", str(tmp_path), "--quiet"])
    assert [o.status for o in outcomes] == ["completed", "completed"]
    records, _ = load_records(tmp_path)
    assert sorted(r["config"]["echo_step"] for r in records) == [1, 2]
    assert {r["tag"] for r in records} == {"sweep:echo_step"}


def test_matrix_records_divergence_and_carries_on(tmp_path, ptb_dir):
    from bench.fanout.jobs import run_matrix

    args = ["--preset", "ptb-tiny", "--data-dir", str(ptb_dir), "--learning-rate", "1e38", "--max-grad-norm", "0",
            "--results-dir", str(tmp_path), "--quiet"]
    outcomes = run_matrix(["numpy"], ["rnn", "lstm"], None, args)
    assert [o.status for o in outcomes] == ["diverged", "diverged"]
    records, _ = load_records(tmp_path)
    assert sorted(r["config"]["cell"] for r in records) == ["lstm", "rnn"]
    assert all(r["status"] == "diverged" and r["failure"]["step"] >= 1 for r in records)


def test_published_table_matches_runs_of_a_published_configuration(results):
    """A ptb-small LSTM record (any eval window length) is set beside 120.7 / 114.5; an RNN, a
    changed setting or a token cap is not; the distance is test / published - 1."""
    from bench.config import make_config, published_preset
    from bench.report.build import published_table

    config = make_config("ptb-small", cell="lstm", backend="torch", impl="fused", threads=1, seed=3).as_dict()
    assert published_preset(config) == "ptb-small"
    assert published_preset({**config, "eval_num_steps": 1}) == "ptb-small"
    assert published_preset(make_config("ptb-medium").as_dict()) == "ptb-medium"
    for changed in ({"cell": "rnn"}, {"learning_rate": 0.5}, {"epochs": 1}, {"max_tokens": 2000}):
        assert published_preset({**config, **changed}) is None, changed
    records, _ = load_records(results)
    echo = records[0]
    from bench.declarations import declarations

    ptb = {**echo, "config": config, "status": "completed", "declared": declarations(config, "ptb-small", True),
           "final": {"valid": {"perplexity": 119.0}, "test": {"perplexity": 114.5 * 1.02}}}
    table = published_table([echo, ptb])
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["preset"], row["published_valid"], row["published_test"]) == ("ptb-small", 120.7, 114.5)
    assert row["test_vs_published_pct"] == pytest.approx(2.0)


def test_speed_tables_in_the_results_directory_are_reported_not_skipped(results, tmp_path):
    from bench.cli import main

    for path in results.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "speed").mkdir()
    assert main(["speed", "--preset", "echo", "--backends", "numpy", "--cells", "lstm", "--rounds", "1", "--steps", "2",
                 "--warmup", "0", "--threads", "1", "--out", str(tmp_path / "speed" / "echo.json")]) == 0
    out = write_report(tmp_path, tmp_path / "out")
    assert out["records"] == 2 and out["bad"] == []
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Speed: echo (`speed/echo.json`)" in text and "| numpy | cell | lstm |" in text


def test_combinations_a_speed_table_skipped_are_listed_with_the_reason(tmp_path):
    table = {"preset": "ptb-small", "peak_gflops": None, "rounds": 1, "steps": 1, "rows": [],
             "skipped": [{"backend": "torch", "impl": "fused", "cell": "mingru", "reason": "torch has no fused layer for cell 'mingru'"}]}
    (tmp_path / "speed").mkdir()
    (tmp_path / "speed" / "t.json").write_text(json.dumps(table))
    out = write_report(tmp_path, tmp_path / "out")
    assert out["bad"] == []
    text = (tmp_path / "out" / "report.md").read_text()
    assert "- not measured: torch/fused mingru: torch has no fused layer for cell 'mingru'" in text
    table["skipped"] = [{"backend": "torch"}]  # a forged list: unreadable, said why
    (tmp_path / "speed" / "t.json").write_text(json.dumps(table))
    assert len(write_report(tmp_path, tmp_path / "out")["bad"]) == 1


def test_durations_are_given_in_human_units():
    from bench.report.build import human_duration

    assert [human_duration(h) for h in (6.85e-03, 0.05, 0.6, 1.35, 2.0, None)] == ["25 s", "3 min", "36 min", "81 min", "2.0 h", None]


# --- sweeps of any value type; tags that name no sweep ------------------------------------

@pytest.fixture
def ticks(monkeypatch):
    """Each figure's file name and x tick labels, the figure still rendered and saved."""
    from bench.report import plots

    seen: dict[str, list[str]] = {}
    save = plots._save

    def capture(fig, path):
        fig.canvas.draw()  # tick labels are set when drawn
        seen[path.name] = [t.get_text() for ax in fig.axes for t in ax.get_xticklabels()]
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", capture)
    return seen


def test_a_sweep_of_a_string_setting_is_reported_as_the_issue_ran_it(tmp_path, capsys, ticks):
    """`bench sweep --param optimizer --values sgd,adagrad --cells rnn --epochs 1`, then
    `bench report`: it crashed converting 'sgd' to a float."""
    from bench.cli import main

    results = tmp_path / "results"
    assert main(["sweep", "--param", "optimizer", "--values", "sgd,adagrad", "--cells", "rnn", "--epochs", "1",
                 "--total-series-length", "1500", "--results-dir", str(results), "--quiet"]) == 0
    assert main(["report", str(results), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Sweep over optimizer: set `.`" in text
    assert "| cell | backend/impl | optimizer = adagrad | optimizer = sgd |" in text
    assert "- **Memory (echo).**" in text and "at optimizer = " in text  # the headline names a value
    swept = {name: labels for name, labels in ticks.items() if name.startswith("sweep-optimizer")}
    assert swept and all(labels == ["adagrad", "sgd"] for labels in swept.values()), ticks  # a categorical axis
    assert any(name.startswith("sweep-curves-optimizer") for name in ticks)


def _point(record, tag, **config):
    point = json.loads(json.dumps(record))
    point.update(tag=tag, run_id=f"{tag}-{config}")
    point["config"].update(config)
    return point


@pytest.mark.parametrize("param, values, heads", [
    ("flag", [True, False], ["flag = False", "flag = True"]),
    ("hidden_size", [8, 4], ["hidden_size = 4", "hidden_size = 8"]),
    ("keep_prob", [1.0, 0.5], ["keep_prob = 0.5", "keep_prob = 1"]),
    ("optimizer", ["sgd", "$x^$ `a|b`"], ["optimizer = $x^$ `a|b`", "optimizer = sgd"]),
    ("mixed", [1, "1", float("nan")], ['mixed = 1', 'mixed = "1"', "mixed = nan"]),
])
def test_sweeps_of_bools_ints_floats_and_strings_are_tabled_headlined_and_drawn(tmp_path, results, ticks, param,
                                                                              values, heads):
    record = json.loads(next(results.glob("*.json")).read_text())
    for k, value in enumerate(values):
        (tmp_path / "results").mkdir(exist_ok=True)
        (tmp_path / "results" / f"{k}.json").write_text(json.dumps(_point(record, f"sweep:{param}", **{param: value})))
    out = write_report(tmp_path / "results", tmp_path / "out")
    (about, table), = out["sweeps"]
    assert about["param"] == param and len(table) == len(values)
    from bench.report.build import sweep_heads

    assert sweep_heads(param, list(table[param])) == heads
    numeric = param in ("hidden_size", "keep_prob")
    # echo's main metric is accuracy: a numeric sweep is headlined by what each cell
    # remembered, as in the answer table; a sweep of other values by the loss it solved
    assert (f"- **Memory (echo, {param}).** Test accuracy >= 0.99" if numeric
            else "- **Memory (echo).** Within the run's budget") in out["summary"]
    drawn = {name: labels for name, labels in ticks.items() if name.startswith(f"sweep-{param}-")}
    assert len(drawn) == 1
    labels, = drawn.values()
    assert numeric or len(labels) == len(values), labels  # one place per value, none dropped
    panels = [name for name in ticks if name.startswith(f"sweep-curves-{param}-")]
    assert len(panels) == 1


@pytest.mark.parametrize("param", ["cell", "backend", "impl", "task", "seed", "no_such_setting"])
def test_a_tag_naming_a_setting_no_sweep_varies_is_an_ordinary_run(tmp_path, results, param):
    records = [json.loads(p.read_text()) for p in sorted(results.glob("*.json"))]
    for k, record in enumerate(records):
        record["tag"] = f"sweep:{param}"
        (tmp_path / "results").mkdir(exist_ok=True)
        (tmp_path / "results" / f"{k}.json").write_text(json.dumps(record))
    out = write_report(tmp_path / "results", tmp_path / "out")
    assert out["sweeps"] == [] and len(out["table"]) == len(records)
    assert sorted(out["table"]["cell"]) == ["lstm", "rnn"]
