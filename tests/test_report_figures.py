"""What the report's figures and page show a reader: one colour per cell in every figure,
a line style per backend/impl, no empty panels, the split of each curve, the gradient ratio
the tables quote, underflow said; wide tables that fit the page.

Records are committed reference records, trimmed and renamed (no run is trained here)."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from matplotlib.colors import to_hex

from bench.report import plots
from bench.report.build import runs_frame, write_report

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"
ECHO = next((REFERENCE / "echo").glob("*-echo-numpy-cell-rnn-*.json"))
ADDING = next((REFERENCE / "adding").glob("*-adding-numpy-cell-rnn-*.json"))


def _trimmed(path: Path) -> dict[str, Any]:
    """A reference record with three epochs and two gradient measurements: quick to draw."""
    record = json.loads(path.read_text())
    record["epochs"] = record["epochs"][:3]
    record["gradient_norms"] = [record["gradient_norms"][0], record["gradient_norms"][-1]]
    return record


def _as(record: dict[str, Any], cell: str, backend: str, impl: str, **config: Any) -> dict[str, Any]:
    made = copy.deepcopy(record)
    made["config"].update(cell=cell, backend=backend, impl=impl, **config)
    made["backend"].update(name=backend, impl=impl)
    made["run_id"] = f"{cell}-{backend}-{impl}-{json.dumps(config, sort_keys=True)}"
    return made


def _write(root: Path, set_name: str, records: list[dict[str, Any]]) -> None:
    (root / set_name).mkdir(parents=True, exist_ok=True)
    for k, record in enumerate(records):
        (root / set_name / f"{k}.json").write_text(json.dumps(record))


def _capture(patch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    """Per figure file: its visible axes, every line (label, colour, style, marker, data),
    every bar's colour and every text on it; nothing rendered."""
    seen: dict[str, dict[str, Any]] = {}

    def capture(fig: Any, path: Path) -> Path:
        axes = [ax for ax in fig.axes if ax.get_visible()]
        texts = [fig.get_suptitle()] + [t.get_text() for ax in axes for t in ax.texts] + \
            [ax.get_title() for ax in axes] + [ax.get_ylabel() for ax in axes] + \
            [t.get_text() for ax in axes for legend in [ax.get_legend(), *ax.artists] if legend is not None
             for t in getattr(legend, "get_texts", list)()]
        seen[path.name] = {
            "axes": len(axes),
            "lines": [(line.get_label(), to_hex(line.get_color()), str(line.get_linestyle()), str(line.get_marker()),
                       list(line.get_xdata()), list(line.get_ydata())) for ax in axes for line in ax.get_lines()],
            "bars": [to_hex(patch.get_facecolor()) for ax in axes for patch in ax.patches],
            "texts": texts,
        }
        plots._pyplot().close(fig)
        path.write_bytes(b"")
        return path

    patch.setattr(plots, "_save", capture)
    patch.setattr("bench.report.html._embedded", lambda alt, source, images: f'<img alt="{alt}">')
    return seen


@pytest.fixture
def figures(monkeypatch) -> dict[str, dict[str, Any]]:
    return _capture(monkeypatch)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """One echo group of a built-in and a plugin cell on NumPy and JAX's two impls, one echo
    lag sweep, one adding group (a task without accuracy); built once for the tests that read it."""
    tmp_path = tmp_path_factory.mktemp("figures")
    echo, root = _trimmed(ECHO), tmp_path / "results"
    combos = [("rnn", "numpy", "cell"), ("rnn", "jax", "cell"), ("rnn", "jax", "fused"), ("zeta", "numpy", "cell")]
    _write(root, "group", [_as(echo, *combo) for combo in combos])
    swept = [{**_as(echo, cell, "numpy", "cell", echo_step=lag), "tag": "sweep:echo_step"}
             for cell in ("rnn", "zeta") for lag in (1, 2)]
    _write(root, "lag", swept)
    _write(root, "adding", [{**_as(_trimmed(ADDING), "rnn", "numpy", "cell"), "tag": None}])
    with pytest.MonkeyPatch.context() as patch:
        figures = _capture(patch)
        out = write_report(root, tmp_path / "out")
    return figures, out


def _cell_of(label: str) -> str | None:
    first = label.split(" ")[0]
    return first if first in ("rnn", "zeta") else None


def test_each_cell_has_one_colour_in_every_figure(report):
    figures, _ = report
    colours: dict[str, set[str]] = {}
    for name, figure in figures.items():
        for label, colour, *_ in figure["lines"]:
            if _cell_of(label):
                colours.setdefault(_cell_of(label), set()).add(colour)
    assert {"gradients-group.png", "curves-group.png", "sweep-echo_step-lag.png"} <= set(figures)
    assert set(colours) == {"rnn", "zeta"} and all(len(c) == 1 for c in colours.values()), colours
    assert colours["rnn"] != colours["zeta"]
    # the throughput bars: train in the cell's own colour
    bars = figures["throughput-group.png"]["bars"]
    assert colours["rnn"] <= set(bars) and colours["zeta"] <= set(bars)


def test_every_backend_impl_gets_its_own_line_style(report):
    figures, _ = report
    styles = {label: (style, marker) for label, _, style, marker, *_ in figures["curves-group.png"]["lines"]
              if label.startswith("rnn ")}
    assert set(styles) == {"rnn jax/cell", "rnn jax/fused", "rnn numpy/cell"}
    assert len(set(styles.values())) == 3, styles


def test_a_task_without_accuracy_draws_no_accuracy_panel(report):
    figures, _ = report
    assert figures["curves-adding.png"]["axes"] == 1
    assert not any("accuracy" in text for text in figures["curves-adding.png"]["texts"])
    assert figures["curves-group.png"]["axes"] == 2  # echo has one


def test_curves_say_which_split_each_line_is(report):
    figures, _ = report
    texts = figures["curves-group.png"]["texts"]
    assert "validation split (bold)" in texts and "train split (thin, pale)" in texts


def test_the_gradient_plot_starts_at_the_ratio_the_tables_quote(report):
    figures, out = report
    ratio = float(out["table"].set_index("cell").loc["zeta", "grad_ratio_init"])
    (xs, ys), = [(x, y) for label, _, _, _, x, y in figures["gradients-group.png"]["lines"] if label == "zeta at init"]
    assert xs[0] == 0 and ys[0] == pytest.approx(ratio, rel=1e-9) and ys[-1] == pytest.approx(1.0)
    assert any("grad ratio" in text for text in figures["gradients-group.png"]["texts"])


def test_norms_that_underflowed_to_zero_are_said_to_have(tmp_path, figures):
    echo = _trimmed(ECHO)
    curve = echo["gradient_norms"][0]["curves"]["dLT_dh"][0]
    curve[:3] = [0.0, 0.0, 0.0]
    _write(tmp_path / "results", "u", [echo])
    write_report(tmp_path / "results", tmp_path / "out")
    figure = figures["gradients-u.png"]
    assert any("3 value(s) of ||dL_T/dh_t|| underflowed to 0" in text for text in figure["texts"]), figure["texts"]
    floor = [(x, y) for _, _, _, marker, x, y in figure["lines"] if marker == "v"]
    assert floor == [([0.0, 1.0, 2.0], [0.0, 0.0, 0.0])]  # a triangle at the axis floor at each
    assert not any("≤ 0" in text for text in figure["texts"])  # not among values "not drawn"


def test_styles_are_assigned_to_the_names_present_in_sorted_order():
    import pandas as pd

    from bench.report.styles import Styles

    runs = pd.DataFrame({"cell": ["zeta", "gru", "zeta"], "backend": ["jax", "jax", "numpy"],
                         "impl": ["fused", "cell", "cell"]})
    styles = Styles(runs)
    assert list(styles.colours) == ["gru", "zeta"] and styles.colour("gru") != styles.colour("zeta")
    assert len({styles.line("jax", "cell"), styles.line("jax", "fused"), styles.line("numpy", "cell")}) == 3
    wide = Styles(pd.DataFrame({"cell": [f"c{k}" for k in range(56)], "backend": [f"b{k:02d}" for k in range(56)],
                                "impl": ["cell"] * 56}))
    assert len(set(wide.lines.values())) == 56


def test_wide_tables_scroll_in_their_own_box_with_breakable_headers(tmp_path):
    from bench.report.html import render

    markdown = ("| cell | configuration | test_vs_published_pct | cpu |\n|---|---|---|---|\n"
                "| lstm | ptb-small, threads=1, learning_rate=0.5 | 0.6851 | Intel(R) Xeon(R) Processor |\n"
                "| rnn | 355,585 ± 149,063 | 2.50e-10 → 0.3034 | x |\n")
    page = render(markdown, tmp_path)
    assert page.count('<div class="table"><table>') == 1 and page.count("</table></div>") == 1
    assert "<th>test_<wbr>vs_<wbr>published_<wbr>pct</th>" in page
    assert '<td class="long">ptb-small, threads=1, learning_rate=0.5</td>' in page
    assert '<td class="long">Intel(R) Xeon(R) Processor</td>' in page
    assert "<td>2.50e-10 → 0.3034</td>" in page and "<td>355,585 ± 149,063</td>" in page
