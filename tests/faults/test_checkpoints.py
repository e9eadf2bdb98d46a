"""Class 1: a checkpoint is validated before anything trains. Whatever is wrong with it
(missing, extra, misshapen or mistyped arrays, arrays of another model, a damaged or foreign
file, broken metadata, another format version) is exit 2, one line naming the file, no
record; the one thing never allowed is a resume from partly fresh weights."""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from backends.base import checkpoint_layout
from bench.run.checkpoints import META_FIELDS, META_KEY, read_checkpoint
from bench.config import make_config
from bench.errors import BenchError
from bench.run.runner import RunOptions, run
from tests.faults.helpers import cli, records_in

ECHO = dict(epochs=1, total_series_length=1500)


def _make_checkpoint(directory: Path, **overrides) -> Path:
    result = run(make_config("echo", **{**ECHO, **overrides}),
                 RunOptions(results_dir=str(directory), quiet=True, keep_checkpoint=True))
    return Path(result.record["checkpoint"])


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A completed 1-epoch echo LSTM run's checkpoint (Adagrad: params and accumulators)."""
    return _make_checkpoint(tmp_path_factory.mktemp("good"))


@pytest.fixture(scope="module")
def rnn_checkpoint(tmp_path_factory) -> Path:
    return _make_checkpoint(tmp_path_factory.mktemp("rnn"), cell="rnn")


@pytest.fixture(scope="module")
def wide_checkpoint(tmp_path_factory) -> Path:
    return _make_checkpoint(tmp_path_factory.mktemp("wide"), hidden_size=8)


def _entries(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    return arrays, json.loads(str(arrays.pop(META_KEY)))


def _write(path: Path, arrays: dict[str, np.ndarray], meta: dict | str | None) -> Path:
    buffer = io.BytesIO()
    extra = {} if meta is None else {META_KEY: np.array(meta if isinstance(meta, str) else json.dumps(meta))}
    np.savez(buffer, **extra, **arrays)
    path.write_bytes(buffer.getvalue())
    return path


def _refused(path: Path, *fragments: str) -> str:
    """read_checkpoint + arrays against the config's own model: a BenchError naming the file."""
    with pytest.raises(BenchError) as caught:
        checkpoint = read_checkpoint(path)
        _check_arrays(checkpoint)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def _check_arrays(checkpoint):
    from backends.base import TrainSettings
    from backends.spec import ModelSpec
    from bench.registry import make_cell

    c = checkpoint.config
    spec = ModelSpec(make_cell(c["cell"], **c), "scalar", 1,
                     c["hidden_size"], c["num_layers"], 2, c["keep_prob"], c["loss_reduction"])
    settings = TrainSettings(impl="cell", optimizer=c["optimizer"], dtype=c["dtype"])
    return checkpoint.arrays(checkpoint_layout(spec, settings))


def test_the_good_checkpoint_passes(good):
    arrays = _check_arrays(read_checkpoint(good))
    assert set(arrays) == {f"{kind}/{name}" for kind in ("param", "adagrad")
                           for name in ("layers.0.U", "layers.0.V", "layers.0.b", "softmax.W", "softmax.b")}


ARRAY_NAMES = [f"{kind}/{name}" for kind in ("param", "adagrad")
               for name in ("layers.0.U", "layers.0.V", "layers.0.b", "softmax.W", "softmax.b")]


@pytest.mark.parametrize("name", ARRAY_NAMES)
def test_a_missing_array_is_refused(good, tmp_path, name):
    arrays, meta = _entries(good)
    del arrays[name]
    _refused(_write(tmp_path / "c.npz", arrays, meta), "lacks 1 array", name)


@pytest.mark.parametrize("name", ["param/extra", "adagrad/layers.1.U", "junk", "param/layers.0.W"])
def test_an_extra_array_is_refused(good, tmp_path, name):
    arrays, meta = _entries(good)
    arrays[name] = np.zeros(3, np.float32)
    _refused(_write(tmp_path / "c.npz", arrays, meta), "does not know", name)


@pytest.mark.parametrize("name", ARRAY_NAMES)
@pytest.mark.parametrize("change", ["transposed", "one row more", "flattened", "float64", "int32", "float16"])
def test_a_misshapen_or_mistyped_array_is_refused(good, tmp_path, name, change):
    arrays, meta = _entries(good)
    a = arrays[name]
    arrays[name] = {"transposed": a.T.copy() if a.ndim == 2 and a.shape[0] != a.shape[1] else a.reshape(1, -1),
                    "one row more": np.concatenate([a, a[:1]]),
                    "flattened": a.reshape(-1, 1),
                    "float64": a.astype(np.float64), "int32": a.astype(np.int32), "float16": a.astype(np.float16),
                    }[change]
    _refused(_write(tmp_path / "c.npz", arrays, meta), f"array {name} is", "the model needs")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", ["param/layers.0.V", "param/softmax.b", "adagrad/layers.0.U"])
def test_non_finite_weights_and_impossible_accumulators_are_refused(good, tmp_path, name, value):
    arrays, meta = _entries(good)
    arrays[name] = arrays[name].copy()
    arrays[name].flat[0] = value if name.startswith("param") or np.isnan(value) else -1.0
    _refused(_write(tmp_path / "c.npz", arrays, meta), name)


def test_arrays_of_another_cell_are_refused(good, rnn_checkpoint, tmp_path):
    """An LSTM config over an RNN's arrays (or the reverse): the shapes say so."""
    rnn_arrays, _ = _entries(rnn_checkpoint)
    _, lstm_meta = _entries(good)
    _refused(_write(tmp_path / "a.npz", rnn_arrays, lstm_meta), "the model needs")
    lstm_arrays, _ = _entries(good)
    _, rnn_meta = _entries(rnn_checkpoint)
    _refused(_write(tmp_path / "b.npz", lstm_arrays, rnn_meta), "the model needs")


def test_arrays_of_another_size_are_refused(good, wide_checkpoint, tmp_path):
    wide, _ = _entries(wide_checkpoint)
    _, meta = _entries(good)
    _refused(_write(tmp_path / "c.npz", wide, meta), "the model needs")


# -- the file itself -------------------------------------------------------------------

def _bytes_cases(good: Path) -> dict[str, bytes]:
    data = good.read_bytes()
    return {
        "empty": b"", "one byte": data[:1], "100 bytes": data[:100], "half": data[: len(data) // 2],
        "all but the last byte": data[:-1], "text": b"hello, I am not a checkpoint\n", "random": os.urandom(4096),
        "json": json.dumps({"run_id": "x"}).encode(), "gzip magic": b"\x1f\x8b" + data[2:200],
    }


@pytest.mark.parametrize("case", ["empty", "one byte", "100 bytes", "half", "all but the last byte", "text",
                                  "random", "json", "gzip magic"])
def test_a_truncated_or_foreign_file_is_refused(good, tmp_path, case):
    path = tmp_path / "c.npz"
    path.write_bytes(_bytes_cases(good)[case])
    _refused(path)


@pytest.mark.parametrize("kind", ["missing", "directory", "fifo", "dev-zero", "dangling-link"])
def test_what_is_not_a_file_is_refused_at_once(tmp_path, kind):
    path = tmp_path / "c.npz"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "dangling-link":
        path.symlink_to(tmp_path / "nowhere")
    _refused(path)


@pytest.mark.parametrize("kind,says", [
    ("missing", "does not exist"),
    ("under-a-file", "cannot be opened: {tmp}/afile is a regular file, not a directory"),
    ("directory", "is a directory, not a checkpoint file"),
    ("fifo", "is a FIFO, not a checkpoint file"),
    ("dangling-link", "is a symbolic link to {tmp}/nowhere, which does not exist"),
])
def test_the_refusal_says_what_is_true_of_the_path(tmp_path, capsys, kind, says):
    """Issue 22 item 11: "does not exist" only of a path where nothing is."""
    path = tmp_path / "c.npz"
    if kind == "under-a-file":
        (tmp_path / "afile").write_text("")
        path = tmp_path / "afile" / "c.npz"
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dangling-link":
        path.symlink_to(tmp_path / "nowhere")
    code, _, err = cli(capsys, ["run", "--resume", str(path), "--quiet"])
    assert code == 2 and err == f"error: checkpoint {path} {says.format(tmp=tmp_path)}\n"


def test_a_flipped_byte_in_array_data_fails_its_crc(good, tmp_path):
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as archive:
        info = archive.getinfo("param/layers.0.V.npy")
    # the local header (30 bytes + name + extra), then the .npy header, then the floats
    offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size - 4
    data[offset] ^= 0x01
    path = tmp_path / "c.npz"
    path.write_bytes(bytes(data))
    _refused(path, "damaged", "CRC")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.floats(0, 1, exclude_max=True), xor=st.integers(1, 255), data=st.data())
def test_any_flipped_byte_is_refused_or_harmless(good, tmp_path, position, xor, data):
    """Wherever a byte flips, the checkpoint is refused with a BenchError or reads back
    exactly as written (the few bytes zip ignores: timestamps, attribute bits)."""
    raw = bytearray(good.read_bytes())
    offset = int(position * len(raw))
    raw[offset] ^= xor
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    path = tmp_path / "flipped.npz"
    path.write_bytes(bytes(raw))
    try:
        checkpoint = read_checkpoint(path)
        arrays = _check_arrays(checkpoint)
    except BenchError as exc:
        assert "\n" not in str(exc)
        return
    original = read_checkpoint(good)
    assert checkpoint.meta == original.meta
    expected = _check_arrays(original)
    assert all(np.array_equal(arrays[k], expected[k]) for k in expected)


# -- the metadata ----------------------------------------------------------------------

REQUIRED = ["checkpoint_version", "run_id", "config", "started_at", "history", "gradient_norms", "resumed"]


@pytest.mark.parametrize("field", REQUIRED)
def test_a_missing_metadata_field_is_refused(good, tmp_path, field):
    arrays, meta = _entries(good)
    del meta[field]
    _refused(_write(tmp_path / "c.npz", arrays, meta))


WRONG_TYPES = [None, True, 3, 2.5, "text", [], {}]
WRONG = [(field, value) for field, (types, _) in META_FIELDS.items() for value in WRONG_TYPES
         if isinstance(value, bool) or not isinstance(value, types)]


@pytest.mark.parametrize("field,value", WRONG, ids=[f"{f}-{type(v).__name__}" for f, v in WRONG])
def test_a_metadata_field_of_the_wrong_type_is_refused(good, tmp_path, field, value):
    arrays, meta = _entries(good)
    meta[field] = value
    _refused(_write(tmp_path / "c.npz", arrays, meta))


@pytest.mark.parametrize("version", [0, 2, "1", 1.0, True, None])
def test_another_format_version_is_refused(good, tmp_path, version):
    arrays, meta = _entries(good)
    meta["checkpoint_version"] = version
    _refused(_write(tmp_path / "c.npz", arrays, meta), "format version")


@pytest.mark.parametrize("meta", ["", "{", "[1, 2]", "null", "\"text\"", "[" * 100_000 + "]" * 100_000])
def test_metadata_that_is_not_an_object_is_refused(good, tmp_path, meta):
    arrays, _ = _entries(good)
    _refused(_write(tmp_path / "c.npz", arrays, meta), "metadata")


def test_no_metadata_is_refused(good, tmp_path):
    arrays, _ = _entries(good)
    _refused(_write(tmp_path / "c.npz", arrays, None), "has no metadata")


def test_metadata_that_is_an_array_of_numbers_is_refused(good, tmp_path):
    arrays, _ = _entries(good)
    buffer = io.BytesIO()
    np.savez(buffer, **{META_KEY: np.zeros(10)}, **arrays)
    (tmp_path / "c.npz").write_bytes(buffer.getvalue())
    _refused(tmp_path / "c.npz", "not one string")


@pytest.mark.parametrize("mutate,fragment", [
    (lambda c: c.pop("hidden_size"), "missing: hidden_size"),
    (lambda c: c.update(colour="red"), "unknown setting(s): colour"),
    (lambda c: c.update(hidden_size=-4), "config is invalid"),
    (lambda c: c.update(hidden_size="4"), "config is invalid"),
    (lambda c: c.update(learning_rate=float("nan")), "config is invalid"),
    (lambda c: c.update(cell="no-such-cell"), "config is invalid"),
    (lambda c: c.update(optimizer="adam"), "config is invalid"),
    (lambda c: c.update(epochs=0), "config is invalid"),
])
def test_a_config_that_is_not_a_valid_config_is_refused(good, tmp_path, mutate, fragment):
    arrays, meta = _entries(good)
    mutate(meta["config"])
    _refused(_write(tmp_path / "c.npz", arrays, meta), fragment)


@pytest.mark.parametrize("run_id", ["../../etc/passwd", "/abs", "a/b", "", ".hidden", "x" * 300, "a\nb"])
def test_a_run_id_that_is_not_a_plain_name_is_refused(good, tmp_path, run_id):
    arrays, meta = _entries(good)
    meta["run_id"] = run_id
    _refused(_write(tmp_path / "c.npz", arrays, meta), "run_id")


@pytest.mark.parametrize("mutate", [
    lambda m: m["history"].__setitem__(0, {"epoch": 2, "train": {}}),
    lambda m: m["history"].__setitem__(0, "epoch 1"),
    lambda m: m["history"].append({"epoch": 2, "train": {}}),  # 2 epochs of history > config's 1
    lambda m: m["gradient_norms"].pop(),
    lambda m: m["gradient_norms"].append({"epoch": 2}),
    lambda m: m["resumed"].append("yesterday"),
], ids=["misnumbered", "not-an-object", "more-than-config", "probe-missing", "probe-extra", "resumed-entry"])
def test_an_inconsistent_history_is_refused(good, tmp_path, mutate):
    arrays, meta = _entries(good)
    mutate(meta)
    _refused(_write(tmp_path / "c.npz", arrays, meta))


# -- through the command line: exit 2, one line, nothing written --------------------------

CLI_CASES = {
    "missing array": lambda a, m: (a.pop("param/layers.0.V"), m)[1],
    "misshapen array": lambda a, m: (a.__setitem__("param/softmax.W", a["param/softmax.W"].T.copy()), m)[1],
    "other version": lambda a, m: {**m, "checkpoint_version": 7},
    "broken config": lambda a, m: {**m, "config": {**m["config"], "hidden_size": "big"}},
    "hostile run id": lambda a, m: {**m, "run_id": "../escape"},
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_resume_from_a_bad_checkpoint_is_exit_2_one_line_no_record(good, tmp_path, capsys, case):
    arrays, meta = _entries(good)
    meta = CLI_CASES[case](arrays, meta)
    path = _write(tmp_path / "c.npz", arrays, meta)
    out = tmp_path / "results"
    code, _, err = cli(capsys, ["run", "--resume", str(path), "--epochs", "2", "--results-dir", str(out), "--quiet"])
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and str(path) in err, err
    assert records_in(out) == [] and not (tmp_path / "escape.json").exists()


def test_a_missing_parameter_never_resumes_silently_through_the_runner(good, tmp_path):
    """The fault the issue found: it used to resume from fresh weights and report completed."""
    arrays, meta = _entries(good)
    del arrays["param/layers.0.U"]
    path = _write(tmp_path / "c.npz", arrays, meta)
    with pytest.raises(BenchError, match="lacks 1 array"):
        run(make_config("echo", **{**ECHO, "epochs": 2}), RunOptions(results_dir=str(tmp_path / "r"), resume=str(path)))
    assert records_in(tmp_path / "r") == []


@pytest.mark.parametrize("backend,impl", [("numpy", "cell"), ("torch", "cell"), ("torch", "fused"),
                                          ("tf", "cell"), ("tf", "fused")])
def test_every_backends_restore_checks_the_exact_layout(backend, impl):
    from backends.base import TrainSettings
    from backends.spec import ModelSpec, init_params
    from bench.registry import get_backend, make_cell

    if backend != "numpy":
        pytest.importorskip({"torch": "torch", "tf": "tensorflow"}[backend])
    spec = ModelSpec(make_cell("lstm"), "scalar", 1, 4, 1, 2, 1.0, "mean")
    model = get_backend(backend).build(spec, init_params(spec, 0.1, np.random.default_rng(0)),
                                       TrainSettings(impl=impl, optimizer="adagrad", threads=1))
    saved = model.checkpoint()
    model.restore(saved)  # its own checkpoint: fine
    for broken in ({k: v for k, v in saved.items() if k != "param/layers.0.V"},
                   {**saved, "param/extra": np.zeros(1, np.float32)},
                   {**saved, "adagrad/softmax.b": saved["adagrad/softmax.b"].astype(np.float64)},
                   {**saved, "param/layers.0.b": saved["param/layers.0.b"][:-1]}):
        with pytest.raises(BenchError, match="checkpoint"):
            model.restore(broken)
