"""Property-based tests: the batch producer and config validation, for random inputs."""
from __future__ import annotations


import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.config import all_options, make_config, validate
from bench.data import epoch_size, ptb_windows
from bench.errors import BenchError


@settings(max_examples=200, deadline=None)
@given(length=st.integers(2, 600), batch=st.integers(1, 12), steps=st.integers(1, 25))
def test_batch_producer_layout(length, batch, steps):
    data = np.arange(length)
    n = epoch_size(length, batch, steps)
    if n < 1:
        try:
            list(ptb_windows(data, batch, steps))
        except BenchError:
            return
        raise AssertionError("too little data must be an error")
    windows = list(ptb_windows(data, batch, steps))
    assert len(windows) == n
    xs = np.concatenate([x for x, _ in windows], axis=1)
    ys = np.concatenate([y for _, y in windows], axis=1)
    batch_len = length // batch
    # every token of each row's stream appears once in x, in order ...
    for row in range(batch):
        assert (xs[row] == np.arange(row * batch_len, row * batch_len + n * steps)).all()
    # ... and y is x shifted by one
    assert (ys == xs + 1).all()
    assert all(x.shape == y.shape == (batch, steps) for x, y in windows)


_INT_FIELDS = ["hidden_size", "num_layers", "num_steps", "batch_size", "epochs", "eval_batch_size",
               "eval_num_steps", "echo_step", "total_series_length"]


F32_MAX, F32_TINY = 3.4028234663852886e38, 1.1754943508222875e-38  # float32's largest and smallest normal
ECHO_ROW = 50_000 // 5  # the echo preset's series cut into 5 rows, windows of 15 steps


def _valid(field: str, value: object) -> bool:
    """The rule, stated independently of the implementation, for the echo preset in float32."""
    if isinstance(value, bool):
        return False
    number = isinstance(value, (int, float))
    if field in ("num_steps", "eval_num_steps"):
        return isinstance(value, int) and 1 <= value <= ECHO_ROW
    if field == "echo_step":  # below the columns the 15-step windows cover
        return isinstance(value, int) and 1 <= value < ECHO_ROW // 15 * 15
    if field in _INT_FIELDS:
        return isinstance(value, int) and 1 <= value <= 2**31 - 1
    if field == "threads":
        return value is None or (isinstance(value, int) and 1 <= value <= 1024)
    if field == "keep_prob":
        return number and F32_TINY <= value <= 1
    if field == "max_grad_norm":
        return number and 0 <= value <= F32_MAX
    if field == "init_scale":
        return number and F32_TINY <= value <= F32_MAX / 2
    if field == "learning_rate":
        return number and F32_TINY <= value <= F32_MAX
    if field == "lr_decay":  # the rate of the 100th epoch, 0.3 * lr_decay ** 99, representable too
        try:
            return number and F32_TINY <= value <= F32_MAX and 0.3 * value**99 <= F32_MAX
        except OverflowError:
            return False
    choices = all_options()[field].choices
    return value in choices


@settings(max_examples=300, deadline=None)
@given(
    field=st.sampled_from(_INT_FIELDS + ["learning_rate", "init_scale", "keep_prob", "lr_decay", "max_grad_norm",
                                         "optimizer", "dtype", "device", "activation", "loss_reduction", "threads"]),
    value=st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                    st.sampled_from(["sgd", "adagrad", "float64", "gpu", "sigmoid", "mean", None, True])),
)
def test_config_validation_accepts_exactly_the_valid_values(field, value):
    base = make_config("echo", total_series_length=50_000, cell="rnn" if field == "activation" else "lstm")
    config = base.replace(**{field: value})
    if field in ("batch_size", "eval_batch_size", "total_series_length") and _valid(field, value):
        return  # divisibility of the echo series is its own test below
    try:
        validate(config)
    except BenchError:
        assert not _valid(field, value), f"{field}={value!r} is valid but was rejected"
        return
    assert _valid(field, value), f"{field}={value!r} is invalid but was accepted"


@settings(max_examples=100, deadline=None)
@given(batch=st.integers(1, 64), length=st.integers(1, 5000))
def test_echo_length_must_divide_into_batch_rows(batch, length):
    try:
        config = make_config("echo", batch_size=batch, eval_batch_size=batch, total_series_length=length)
    except BenchError:
        # rows of equal length, each holding a 15-step window whose steps reach past the lag of 3
        assert length % batch or length // batch < 15
        return
    assert config.total_series_length % config.batch_size == 0


def test_every_setting_has_help():
    assert all(option.help for option in all_options().values())


@settings(max_examples=200, deadline=None)
@given(length=st.integers(0, 600), batch=st.integers(1, 12), steps=st.integers(1, 40))
def test_eval_windows_score_every_token_whatever_the_window_length(length, batch, steps):
    """Evaluation windows: each row's tokens once, in order, all but the row's last (it has no
    target), with a shorter last window for the remainder; y is x shifted by one."""
    from bench.data.batching import eval_window_count, ptb_eval_windows

    data = np.arange(length)
    batch_len = length // batch
    if batch_len < 2:
        for call in (lambda: eval_window_count(length, batch, steps), lambda: list(ptb_eval_windows(data, batch, steps))):
            try:
                call()
            except BenchError:
                continue
            raise AssertionError("a row with no token to score must be an error")
        return
    windows = list(ptb_eval_windows(data, batch, steps))
    assert len(windows) == eval_window_count(length, batch, steps)
    assert all(x.shape == y.shape and x.shape[0] == batch and 1 <= x.shape[1] <= steps for x, y in windows)
    assert all(x.shape[1] == steps for x, _ in windows[:-1])
    xs = np.concatenate([x for x, _ in windows], axis=1)
    ys = np.concatenate([y for _, y in windows], axis=1)
    for row in range(batch):
        assert (xs[row] == np.arange(row * batch_len, (row + 1) * batch_len - 1)).all()
    assert (ys == xs + 1).all()
