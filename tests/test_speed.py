"""bench speed and bench roofline produce their figures (the figures themselves are not asserted)."""
import json

from bench.cli import main
from bench.run.records import cpu_model
from bench.registry import cell_names, make_cell
from bench.measure.roofline import measure_peak, record_peak


def test_speed_table_for_numpy_on_the_echo_preset(tmp_path, capsys):
    out = tmp_path / "speed.json"
    code = main(["speed", "--preset", "echo", "--backends", "numpy", "--rounds", "2", "--steps", "3",
                 "--warmup", "1", "--threads", "1", "--out", str(out)])
    assert code == 0
    table = json.loads(out.read_text())
    assert (table["cpu"], table["threads"], table["device"]) == (cpu_model(), 1, "cpu")  # every table names its CPU
    # every cell, listed order; the scan, where a cell declares a linear recurrence, and no other's
    linear = [c for c in cell_names() if make_cell(c).is_linear]
    assert [(r["backend"], r["impl"], r["cell"]) for r in table["rows"]] == \
        [("numpy", "cell", c) for c in cell_names()] + [("numpy", "scan", c) for c in linear]
    assert table["skipped"] == []
    for row in table["rows"]:
        assert row["train_tok_s"] > 0 and row["eval_tok_s"] > 0 and row["train_pct_peak"] > 0
        assert row["train_min"] <= row["train_tok_s"] <= row["train_max"]
    out = capsys.readouterr().out
    assert all(f"numpy/cell    {cell}" in out for cell in cell_names())


def test_roofline_measures_and_appends(tmp_path):
    first = measure_peak(threads=1, n=128, seconds=0.2)
    assert first["threads"] == 1 and first["gflops"]["numpy"] > 0
    path = record_peak(tmp_path, first)
    record_peak(tmp_path, first)
    assert len(json.loads(path.read_text())["measurements"]) == 2


def test_speed_measures_the_peak_in_every_round(tmp_path):
    """% of peak is taken against peaks measured between the contenders, one per round."""
    out = tmp_path / "speed.json"
    assert main(["speed", "--preset", "echo", "--backends", "numpy", "--cells", "rnn", "--rounds", "3", "--steps", "2",
                 "--warmup", "0", "--threads", "1", "--out", str(out)]) == 0
    table = json.loads(out.read_text())
    peaks = table["peaks_per_round"]
    assert len(peaks) == 3 and all(p > 0 for p in peaks)
    assert table["peak_gflops"] == sorted(peaks)[1]
    row = table["rows"][0]
    assert abs(row["train_pct_peak"] - 100 * row["train_gflops"] / table["peak_gflops"]) < 1e-9
    for phase in ("train", "eval"):
        assert row[f"{phase}_ceiling_tok_s"] > 0
        assert abs(row[f"{phase}_pct_ceiling"] - 100 * row[f"{phase}_tok_s"] / row[f"{phase}_ceiling_tok_s"]) < 1e-9


def test_model_gemms_count_the_same_flops_as_the_analytic_count():
    """The ceiling's products are the analytic FLOP count's matrix products, no more, no less."""
    from bench.run.metrics import flops_per_token
    from bench.measure.roofline import model_gemms
    from bench.measure.speed import preset_spec

    for preset in ("ptb-small", "echo"):
        for cell in cell_names():  # a cell with no recurrent weights (minGRU) counts none
            config, spec = preset_spec(preset, cell)
            tokens = config.batch_size * config.num_steps
            width = spec.cell.n_blocks * spec.hidden_size
            elementwise = spec.num_layers * 10.0 * width + 5.0 * spec.n_classes
            for training in (True, False):
                gemm_flops = sum(2.0 * m * k * n * count for m, k, n, count in model_gemms(spec, config.batch_size, config.num_steps, training))
                expected = flops_per_token(spec, training) - (3.0 if training else 1.0) * elementwise
                assert abs(gemm_flops / tokens - expected) < 1e-6 * expected


def test_a_combination_the_backend_cannot_run_is_skipped_with_its_reason(tmp_path, capsys, monkeypatch):
    """As a fused impl without a layer for the cell: no row, one line, the reason kept."""
    from backends.numpy import NumpyBackend

    real = NumpyBackend.unsupported.__func__
    monkeypatch.setattr(NumpyBackend, "unsupported",
                        classmethod(lambda cls, cell, impl: "no kernel for this one" if cell.name == "rnn" else real(cls, cell, impl)))
    out = tmp_path / "speed.json"
    assert main(["speed", "--preset", "echo", "--backends", "numpy", "--cells", "rnn,lstm", "--rounds", "1", "--steps", "1",
                 "--warmup", "0", "--threads", "1", "--out", str(out)]) == 0
    table = json.loads(out.read_text())
    assert [r["cell"] for r in table["rows"]] == ["lstm"] and "error" not in table["rows"][0]
    assert table["skipped"] == [{"backend": "numpy", "impl": "cell", "cell": "rnn", "reason": "no kernel for this one"}]
    assert "skipping numpy/cell rnn: no kernel for this one" in capsys.readouterr().err
    assert main(["speed", "--preset", "echo", "--backends", "numpy", "--cells", "rnn", "--threads", "1"]) == 2
    assert capsys.readouterr().err.endswith("\nerror: nothing to measure: no kernel for this one\n")
