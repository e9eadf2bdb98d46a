import pytest

from bench.config import Config, learning_rate_at, make_config, presets
from bench.errors import BenchError


def test_published_presets_match_zaremba_et_al():
    table = {  # hidden, steps, init, lr, clip, max_epoch, epochs, keep, decay
        "ptb-small": (200, 20, 0.1, 1.0, 5, 4, 13, 1.0, 0.5),
        "ptb-medium": (650, 35, 0.05, 1.0, 5, 6, 39, 0.5, 0.8),
        "ptb-large": (1500, 35, 0.04, 1.0, 10, 14, 55, 0.35, 1 / 1.15),
    }
    for name, row in table.items():
        c = make_config(name)
        assert (c.hidden_size, c.num_steps, c.init_scale, c.learning_rate, c.max_grad_norm, c.max_lr_epoch,
                c.epochs, c.keep_prob, c.lr_decay) == pytest.approx(row), name
        assert (c.num_layers, c.batch_size, c.forget_bias, c.optimizer) == (2, 20, 0.0, "sgd")
        # batch 1 as published; 35 steps per call score the same tokens (tests/data, tests/test_runner.py)
        assert (c.eval_batch_size, c.eval_num_steps, c.loss_reduction) == (1, 35, "sum_steps_mean_batch")


def test_tutorial_and_echo_presets_use_forget_bias_one():
    assert make_config("ptb-tutorial").forget_bias == 1.0
    echo = make_config("echo")
    assert (echo.forget_bias, echo.hidden_size, echo.batch_size, echo.num_steps, echo.echo_step) == (1.0, 4, 5, 15, 3)
    assert (echo.optimizer, echo.learning_rate, echo.epochs, echo.total_series_length) == ("adagrad", 0.3, 100, 50_000)


def test_learning_rate_schedule():
    c = make_config("ptb-small")
    assert [learning_rate_at(c, e) for e in range(6)] == [1.0, 1.0, 1.0, 1.0, 0.5, 0.25]


def test_task_picks_its_default_preset_and_overrides_apply():
    c = make_config(task="ptb", hidden_size=128, epochs=2)
    assert (c.task, c.hidden_size, c.epochs, c.num_steps) == ("ptb", 128, 2, 20)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"hidden_size": 0}, r"--hidden-size must be an integer in \[1, 2\*\*31 - 1\], got 0"),
        ({"batch_size": -3}, r"--batch-size must be an integer in \[1, 2\*\*31 - 1\], got -3"),
        ({"learning_rate": 0.0}, r"--learning-rate must be a number in \[1.17.*e-38, 3.40.*e\+38\] \(representable in float32\), got 0.0"),
        ({"learning_rate": float("nan")}, "--learning-rate must be a number in .*, got nan"),
        ({"keep_prob": 1.5}, r"--keep-prob must be a number in \[.*, 1.0\] .*, got 1.5"),
        ({"optimizer": "adam"}, "unknown optimizer 'adam'; choose one of: sgd, adagrad"),
        ({"task": "mnist"}, "unknown task 'mnist'; choose one of: adding, copy, echo, ptb"),
        ({"total_series_length": 101}, "--total-series-length must be a multiple of --batch-size 5"),
        ({"threads": 0}, r"--threads must be an integer in \[1, 1024\]"),
        ({"max_grad_norm": -1.0}, r"--max-grad-norm must be a number in \[0.0, "),
    ],
)
def test_invalid_settings_are_rejected(overrides, message):
    with pytest.raises(BenchError, match=message):
        make_config(**overrides)


def test_unknown_preset_suggests_a_close_one():
    with pytest.raises(BenchError, match=r"unknown preset 'ptb-smal' \(did you mean 'ptb-small'\?\)"):
        make_config("ptb-smal")


def test_preset_and_task_must_agree():
    with pytest.raises(BenchError, match="is for task echo, but --task ptb"):
        make_config("echo", task="ptb")


def test_every_preset_is_valid():
    for name in presets():
        assert isinstance(make_config(name), Config)
