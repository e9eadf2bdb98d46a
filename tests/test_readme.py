"""Every command line in README.md's code blocks is run by a test, so none breaks unnoticed.

``COVERS`` says, for each command of those lines (a line joined by ``&&`` is several), how it
is covered: a ``bench`` command is run, as written when it is quick, else with flags of its
own appended (argparse keeps the last of a repeated flag, so they override); a command that
needs what a test machine lacks (a Ray cluster, the network, the whole suite) is covered by
the check its entry names. A README command without an entry fails
``test_every_readme_command_is_covered``, an entry whose command left the README fails too.
Everything runs in a scratch working directory, the corpus found through ``$BENCH_DATA_DIR``
as the README says, so nothing lands in the repository.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from bench.cli import main
from tests.conftest import REPO_ROOT

README = REPO_ROOT / "README.md"
# The first word of a command line (a code block's other lines are output or code).
COMMAND_WORDS = ("python", "python3", ".venv/bin/python", ".venv/bin/pip", "pip", "cellbench", "bench", "tox", "pytest",
                 "ray")
BENCH_PREFIXES = (("python", "-m", "bench"), ("python3", "-m", "bench"), (".venv/bin/python", "-m", "bench"), ("cellbench",))

ECHO_QUICK = ("--epochs", "1", "--total-series-length", "1500", "--threads", "1")
PTB_QUICK = ("--epochs", "1", "--max-tokens", "2000", "--threads", "1")
SEQUENCES_QUICK = ("--epochs", "1", "--batches-per-epoch", "2", "--eval-sequences", "20", "--eval-batch-size", "10",
                   "--threads", "1")
NO_CLUSTER = {"RAY_ADDRESS": "127.0.0.1:1"}  # where `--address auto` looks first: certainly no cluster there


@dataclass(frozen=True)
class Bench:
    """A bench command run through ``bench.cli.main`` in the scratch directory with ``extra``
    flags appended; ``needs`` what it reads, made first; ``alone``: in its own process (Ray
    keeps process-wide state); ``records``: completed records it must leave; ``says``: text
    its output must hold; ``code``: its exit status."""

    extra: tuple[str, ...] = ()
    why: str = "as written: quick"
    needs: tuple[str, ...] = ()
    alone: bool = False
    env: dict[str, str] = field(default_factory=dict)
    records: int | None = None
    says: str | None = None
    code: int = 0


@dataclass(frozen=True)
class Check:
    """A command covered by ``check(scratch directory)`` instead of by the bench CLI."""

    why: str
    check: Callable[[Path], None]


def readme_commands(text: str) -> list[str]:
    """Each command (a line split at ``&&``, its comment dropped) of the README's command
    blocks, in order. A command block is a code block without a language (or marked as a
    shell) with a line that starts with a command word; every line of it is a command, so
    one that starts otherwise (``export``, ``cd``) is a command to cover too. Blocks of
    output or code have no such line."""
    commands: list[str] = []
    for language, lines in _code_blocks(text):
        if language not in ("", "sh", "bash", "shell", "console"):
            continue
        found = [re.split(r"\s#(?:\s|$)", line, maxsplit=1)[0].strip() for line in lines]
        found = [command for command in found if command]
        if any(command.split()[0] in COMMAND_WORDS for command in found):
            commands += [part.strip() for command in found for part in command.split("&&")]
    return commands


def _code_blocks(text: str) -> list[tuple[str, list[str]]]:
    """``(language, lines)`` of each fenced code block."""
    blocks: list[tuple[str, list[str]]] = []
    language: str | None = None
    for line in text.splitlines():
        if line.startswith("```"):
            if language is None:
                language = line[3:].strip()
                blocks.append((language, []))
            else:
                language = None
        elif language is not None:
            blocks[-1][1].append(line)
    return blocks


def _venv_as_written(tmp_path: Path) -> None:
    """Python's own venv, run as written (a Python without its venv module fails here as it would for a user)."""
    python3 = shutil.which("python3") or sys.executable
    done = subprocess.run([python3, "-m", "venv", ".venv"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and (tmp_path / ".venv" / "bin" / "python").exists(), done.stderr


def _installable(*extras: str) -> Callable[[Path], None]:
    """What a pip line names: this project with the extras it asks for, and the example plugins."""
    def check(tmp_path: Path) -> None:
        text = (REPO_ROOT / "pyproject.toml").read_text()
        assert re.search(r'^name = "cellbench"$', text, re.M)
        table = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]  # tomllib is 3.11+
        declared = set(re.findall(r"^([A-Za-z0-9_-]+) = \[", table, re.M))
        assert set(extras) <= declared, f"pyproject.toml declares no extra {set(extras) - declared}"
        if extras:
            for plugin in ("mingru", "minlstm"):
                assert (REPO_ROOT / "examples" / plugin / "pyproject.toml").is_file()
    return check


def _test_paths_exist(tmp_path: Path) -> None:
    for path in ("tests", "examples/mingru/tests", "examples/minlstm/tests"):
        assert list((REPO_ROOT / path).rglob("test_*.py")), f"{path} holds no tests"
    assert "test-command" in (REPO_ROOT / ".ci" / "run").read_text()  # CI runs this very line, read from the README


def _ray_cli_installed(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    assert shutil.which("ray", path=str(Path(sys.executable).parent)), "the ray extra installs the `ray` command"


COVERS: dict[str, Bench | Check] = {
    "python3 -m venv .venv": Check("as written, in the scratch directory", _venv_as_written),
    ".venv/bin/pip install -e .": Check("needs the network; here: the project it installs", _installable()),
    ".venv/bin/pip install -q -e '.[all,test]' -e examples/mingru -e examples/minlstm": Check(
        "needs the network; here: the extras it names are declared and the plugins are projects",
        _installable("all", "test")),
    ".venv/bin/python -m pytest -q -n auto tests examples/mingru/tests examples/minlstm/tests": Check(
        "the whole suite (CI runs this line, .ci/run); here: the paths it names hold tests", _test_paths_exist),
    ".venv/bin/python -m bench run --backend numpy --cell lstm": Bench(ECHO_QUICK, "one epoch of a short series", records=1),
    "python -m bench list": Bench(says="presets:"),
    "python -m bench run --backend numpy --cell rnn": Bench(ECHO_QUICK, "one epoch of a short series", records=1),
    "python -m bench run --backend numpy --cell lstm --preset ptb-small --epochs 1": Bench(
        PTB_QUICK, "the first 2,000 tokens of each split", ("ptb",), records=1),
    "python -m bench run --preset ptb-small --hidden-size 128 --epochs 2 --seed 7": Bench(
        PTB_QUICK, "one epoch over 2,000 tokens", ("ptb",), records=1),
    "python -m bench run --preset ptb-small --max-tokens 50000 --epochs 2": Bench(
        PTB_QUICK, "one epoch over 2,000 tokens", ("ptb",), records=1),
    "python -m bench run --preset adding --adding-length 200 --cell gru": Bench(
        SEQUENCES_QUICK, "2 updates, 20 held-out sequences", records=1),
    "python -m bench run --preset copy --copy-lag 50 --epochs 5 --batches-per-epoch 40": Bench(
        SEQUENCES_QUICK, "2 updates, 20 held-out sequences", records=1),
    "python -m bench run --resume results/runs/checkpoints/<run_id>.npz": Bench(
        ("--epochs", "2"), "<run_id>: a short run that kept its checkpoint; one more epoch", ("checkpoint",), records=1),
    "python -m bench data ptb": Bench(
        why="as written, offline: the verified corpus in $BENCH_DATA_DIR, the network refused", needs=("ptb", "offline"),
        says="already there and verified; nothing downloaded"),
    "python -m bench matrix --backends numpy,torch,tf --cells rnn,lstm,gru": Bench(
        ("--backends", "numpy", "--cells", "rnn", *ECHO_QUICK), "one combination, short; into the default directory",
        records=1),
    "python -m bench sweep --param echo_step --values 1,3,6,10,14": Bench(
        ("--values", "1,3", "--cells", "rnn", *ECHO_QUICK), "two values, one cell, short", records=2),
    "python -m bench sweep --param copy_lag --values 50,100,200 --preset copy": Bench(
        ("--values", "5,10", "--cells", "rnn", *SEQUENCES_QUICK), "two short lags, one cell, 2 updates", records=2),
    "python -m bench matrix --cells rnn,lstm --seeds 0,1,2 --threads 1": Bench(
        ("--backends", "numpy", "--cells", "rnn", "--seeds", "0,1", *ECHO_QUICK), "one combination, two seeds, short",
        records=2),
    "python -m bench matrix --executor ray --address auto --threads 1": Bench(
        ECHO_QUICK, "needs a Ray cluster: its one-line refusal where there is none ($RAY_ADDRESS at a closed port)",
        ("ray",), alone=True, env=NO_CLUSTER, code=2, says="error: --address auto: nothing answers at "),
    "python -m bench report": Bench(
        why="as written, over a short run and this machine's peak in results/roofline.json", needs=("run", "roofline"),
        says="% of peak: against the float32 GEMM peaks in results/roofline.json"),
    "python -m bench report results/reference": Bench(
        why="as written, over a copy of one committed set (results/reference/ptb-small-1epoch) and its roofline.json",
        needs=("reference",), says="% of peak: against the float32 GEMM peaks recorded under results/reference"),
    "python -m bench roofline": Bench(
        why="as written, the yardstick measured at n=256 for 0.05 s (no flag sets how long)", needs=("short-peak",),
        says="-> results/roofline.json"),
    "python -m bench speed --preset ptb-small": Bench(
        ("--backends", "numpy", "--cells", "rnn", "--rounds", "1", "--steps", "1", "--warmup", "0", "--threads", "1"),
        "one backend and cell, one step; the yardstick measured briefly", ("short-peak",), says="numpy/cell    rnn"),
    "python -m bench matrix --executor ray --cells rnn,lstm --seeds 0,1 --threads 1": Bench(
        ("--backends", "numpy", "--cells", "rnn", "--seeds", "0", *ECHO_QUICK),
        "on a local Ray instance, one combination and seed, short", ("ray",), alone=True, records=1),
    "ray start --head": Check("Ray's own command: would start a cluster; here: the ray extra installs it",
                              _ray_cli_installed),
    "ray start --address=HEAD_IP:6379": Check("Ray's own command, needs a head; here: the ray extra installs it",
                                              _ray_cli_installed),
    "python -m bench matrix --executor ray --address auto --seeds 0,1,2 --threads 1 --results-dir results/cluster": Bench(
        ECHO_QUICK, "needs a Ray cluster: its one-line refusal where there is none ($RAY_ADDRESS at a closed port)",
        ("ray",), alone=True, env=NO_CLUSTER, code=2, says="error: --address auto: nothing answers at "),
}

COMMANDS = readme_commands(README.read_text(encoding="utf-8"))


def test_the_readme_has_command_lines():
    """The extraction itself: were it to find nothing, every other test here would pass idly."""
    assert "python -m bench list" in COMMANDS and len(COMMANDS) >= 20


def test_the_extraction_finds_shell_lines_only():
    text = ("```\npython -m bench list   # a comment\nprintf x\n```\n"
            "```python\npython -m bench run\n```\n"
            "<!-- marker -->\n```\npython3 -m venv .venv && .venv/bin/pip install -e . && cellbench report\n```\n"
            "    python -m bench speed (indented prose, no block)\n")
    assert readme_commands(text) == ["python -m bench list", "printf x", "python3 -m venv .venv",
                                     ".venv/bin/pip install -e .", "cellbench report"]
    assert readme_commands("```\ninput: the cat\npredicted: a dog\n```\n") == []  # output, not commands


def test_every_readme_command_is_covered():
    missing = [command for command in COMMANDS if command not in COVERS]
    assert not missing, ("README line not covered by a test: " + "; ".join(missing)
                         + " (give it an entry in COVERS, tests/test_readme.py)")
    stale = [command for command in COVERS if command not in COMMANDS]
    assert not stale, "COVERS names commands the README no longer has: " + "; ".join(stale)


@pytest.mark.parametrize("command", [c for c in COVERS if isinstance(COVERS[c], Check)], ids=str)
def test_a_command_not_run_here_passes_its_check(command, tmp_path):
    COVERS[command].check(tmp_path)


@pytest.mark.parametrize("command", [c for c in COVERS if isinstance(COVERS[c], Bench)], ids=str)
def test_a_bench_command_runs(command, tmp_path, monkeypatch, capsys, request):
    cover = COVERS[command]
    monkeypatch.chdir(tmp_path)
    argv = _bench_argv(command)
    argv = _prepare(cover.needs, argv, tmp_path, monkeypatch, request)
    results = Path(argv[argv.index("--results-dir") + 1]) if "--results-dir" in argv else Path("results/runs")
    before = set(results.glob("*.json")) if results.is_dir() else set()
    if cover.alone:
        done = subprocess.run([sys.executable, "-m", "bench", *argv, *cover.extra], cwd=tmp_path, env={**os.environ, **cover.env},
                              capture_output=True, text=True, timeout=300)
        code, out, err = done.returncode, done.stdout, done.stderr
    else:
        for name, value in cover.env.items():
            monkeypatch.setenv(name, value)
        code = main([*argv, *cover.extra])
        out, err = capsys.readouterr()
    assert code == cover.code, f"{command} {' '.join(cover.extra)} ({cover.why}): exit {code}\n{out}\n{err}"
    if cover.code:
        assert err.count("\n") == 1 and "Traceback" not in err, err  # a refusal is one line
    if cover.says:
        assert cover.says in out + err + _report_text(argv), out + err
    if cover.records is not None:
        made = [json.loads(p.read_text()) for p in sorted(set(results.glob("*.json")) - before | _resumed(argv))]
        assert len(made) == cover.records and {r["status"] for r in made} == {"completed"}, [r["status"] for r in made]


def _bench_argv(command: str) -> list[str]:
    words = shlex.split(command)
    for prefix in BENCH_PREFIXES:
        if tuple(words[: len(prefix)]) == prefix:
            return words[len(prefix):]
    raise AssertionError(f"{command} is no bench command: cover it with a Check")


def _prepare(needs: tuple[str, ...], argv: list[str], tmp_path: Path, monkeypatch, request) -> list[str]:
    """Make what the command reads, as a user would have it; returns the argv with the
    README's placeholder filled in."""
    from bench.measure import roofline

    short_peak = roofline.measure_peak

    def brief_peak(threads: int | None = None, n: int = 2048, seconds: float = 3.0) -> dict:
        return short_peak(threads, n=256, seconds=0.05)

    for need in needs:
        if need == "ptb":  # where the README says the corpus is found without --data-dir
            monkeypatch.setenv("BENCH_DATA_DIR", str(request.getfixturevalue("ptb_dir")))
        elif need == "offline":
            import urllib.request

            monkeypatch.setattr(urllib.request, "urlopen", _no_network)
        elif need == "ray":
            pytest.importorskip("ray")
        elif need == "short-peak":
            monkeypatch.setattr(roofline, "measure_peak", brief_peak)
        elif need == "checkpoint":
            assert main(["run", "--cell", "rnn", *ECHO_QUICK, "--keep-checkpoint", "--quiet"]) == 0
            (checkpoint,) = Path("results/runs/checkpoints").glob("*.npz")
            argv = [word.replace("<run_id>", checkpoint.stem) for word in argv]
        elif need == "run":
            assert main(["run", "--cell", "rnn", *ECHO_QUICK, "--quiet"]) == 0
        elif need == "roofline":  # this machine at the run's thread count, so the run gets a % of peak
            roofline.record_peak("results", brief_peak(1))
        elif need == "reference":
            reference = REPO_ROOT / "results" / "reference"
            shutil.copytree(reference / "ptb-small-1epoch", tmp_path / "results" / "reference" / "ptb-small-1epoch")
            shutil.copy(reference / "roofline.json", tmp_path / "results" / "reference")
        else:
            raise AssertionError(f"unknown need {need!r}")
    return argv


def _no_network(*args, **kwargs):
    raise AssertionError("tried the network")


def _resumed(argv: list[str]) -> set[Path]:
    """A resumed run updates its own record: that one counts."""
    if "--resume" not in argv:
        return set()
    run_id = Path(argv[argv.index("--resume") + 1]).stem
    return {Path("results/runs") / f"{run_id}.json"}


def _report_text(argv: list[str]) -> str:
    """report.md of a `bench report` (the peak's source is said there), else nothing."""
    if argv[0] != "report":
        return ""
    directory = Path(argv[1] if len(argv) > 1 and not argv[1].startswith("-") else "results/runs")
    return (directory / "report.md").read_text(encoding="utf-8")

