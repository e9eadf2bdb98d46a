"""Checks that `bench matrix`, `sweep`, `speed` and `roofline` make before any work starts.

Each of them runs child processes for minutes or hours; a bad name, an empty list, a flag
the runs cannot parse or a setting one combination rejects must fail at once, in one line,
not in the child that reaches it last. So every list is read strictly, every name looked
up, and every combination's ``bench run`` arguments parsed, validated, sized against the
memory (:mod:`bench.run.budget`) and fitted to its data here, in the parent.
"""
from __future__ import annotations

import argparse
import contextlib
import io
from typing import Any, Sequence

from bench.config import THREADS, Config, config_from_args, flag, make_config, setting_names
from cells.options import INT32_MAX, Bound, check_bound
from bench.errors import BenchError, unknown_name
from bench.storage import check_writable_file, refuse_link

# Bounds of the flags of speed and roofline (the run flags' are declared on Config).
SPEED_BOUNDS = {"--rounds": Bound(1, INT32_MAX), "--steps": Bound(1, INT32_MAX), "--warmup": Bound(0, INT32_MAX),
                "--threads": THREADS}

# Settings a sweep cannot vary, and why.
UNSWEPT = {
    "backend": "the sweep runs one --backend; `bench matrix` compares backends",
    "impl": "the sweep runs one --impl; `bench matrix` compares impls",
    "cell": "the sweep runs each of --cells",
    "task": "each task has its own preset and sizes, so the runs would differ in more than the task; "
            "sweep within one --preset",
}


def items(text: str, option: str, what: str = "name") -> list[str]:
    """A comma-separated list: at least one item, none empty, none twice."""
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        raise BenchError(f"{option} must list at least one {what}, got {text!r}")
    if not all(parts):
        raise BenchError(f"{option} must not have an empty {what} (two commas, or one at an end), got {text!r}")
    twice = sorted({part for part in parts if parts.count(part) > 1})
    if twice:
        raise BenchError(f"{option} must give each {what} once, got {', '.join(twice)} twice in {text!r}")
    return parts


def parse_run_args(argv: Sequence[str]) -> argparse.Namespace:
    """``argv`` parsed as ``bench run`` parses it; argparse's error (usage and message,
    exit 2) becomes one BenchError line."""
    from bench.run_flags import run_parser

    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            return run_parser().parse_args(list(argv))
    except SystemExit:
        lines = errors.getvalue().splitlines()
        raise BenchError(next((line.split(": error: ", 1)[1] for line in lines if ": error: " in line),
                              f"bench run cannot parse {' '.join(argv)}")) from None


def grid(args: argparse.Namespace) -> tuple[list[str], list[str], list[str] | None]:
    """``--backends``, ``--cells`` and ``--impls`` of matrix or speed, read strictly; left out:
    every registered backend and cell (a plugin's too), every impl of each backend."""
    from bench.registry import backend_names, cell_names

    impls = items(args.impls, "--impls", "impl") if args.impls is not None else None
    backends = items(args.backends, "--backends", "backend") if args.backends is not None else backend_names()
    cells = items(args.cells, "--cells", "cell") if args.cells is not None else cell_names()
    return backends, cells, impls


def check_names(backends: Sequence[str], cells: Sequence[str], impls: Sequence[str] | None) -> None:
    """Every backend and cell registered, every impl one of those backends has."""
    from bench.registry import get_backend, make_cell

    for cell in cells:
        make_cell(cell)
    known = {impl for name in backends for impl in get_backend(name).impls}
    for impl in impls or ():
        if impl not in known:
            raise unknown_name("impl", impl, sorted(known))


def check_matrix(backends: Sequence[str], cells: Sequence[str], impls: Sequence[str] | None, run_args: list[str]) -> None:
    """Names, the flags passed on, and every combination's settings, memory and data."""
    from bench.fanout.jobs import combinations, matrix_argv

    check_names(backends, cells, impls)
    _passed_on(run_args)
    _check_runs({f"{b}/{i} {c}": matrix_argv(b, i, c, run_args) for b, i, c in combinations(backends, cells, impls)})


def check_sweep(param: str, values: Sequence[str], cells: Sequence[str], backend: str, impl: str | None,
                run_args: list[str]) -> None:
    """The setting, its values (each valid, none twice), the cells, the backend, the flags
    passed on, and every point's settings, memory and data."""
    from bench.fanout.jobs import sweep_argv
    from bench.registry import get_backend, make_cell, require_available

    settings = setting_names()
    if param not in settings:
        raise unknown_name("setting", param, settings)
    if param in UNSWEPT:
        raise BenchError(f"--param {param} cannot be swept: {UNSWEPT[param]}")
    backend_cls = get_backend(backend)
    resolved = require_available(backend_cls, impl)
    args = _passed_on(run_args)
    if getattr(args, param) is not None:
        raise BenchError(f"{flag(param)} is the swept setting; give its values in --values only")
    configs = _check_runs({f"{backend} {cell} {param}={value}": sweep_argv(param, value, cell, backend, impl, run_args)
                           for cell in cells for value in values})
    for cell, config in zip((c for c in cells for _ in values), configs):
        if why := backend_cls.unsupported(make_cell(cell, **dict(config.cell_options)), resolved):
            raise BenchError(why)
    swept = [getattr(config, param) for config in configs[: len(values)]]
    for i, value in enumerate(swept):
        if value in swept[:i]:
            first = values[swept.index(value)]
            raise BenchError(f"--values must differ, got {first!r} and {values[i]!r}, both {param} = {value!r}")


def check_speed(args: argparse.Namespace, backends: Sequence[str], cells: Sequence[str],
                impls: Sequence[str] | None, overrides: dict[str, Any] | None = None) -> None:
    """Bounds of the counts, the preset with ``overrides`` (--hidden-size, --batch-size),
    the names, every combination's memory, and that ``--out`` can be written, all before the
    first measurement."""
    from bench.run.budget import check_memory
    from bench.fanout.jobs import combinations

    for option, bound in SPEED_BOUNDS.items():
        value = getattr(args, option[2:])
        if value is not None:
            check_bound(option, value, bound)
    make_config(args.preset, **(overrides or {}))
    check_names(backends, cells, impls)
    for backend, impl, cell in combinations(backends, cells, impls):
        check_memory(make_config(args.preset, **(overrides or {}), backend=backend, impl=impl, cell=cell))
    if args.out:
        writable_file(args.out, "--out")


def check_roofline(args: argparse.Namespace) -> None:
    """``--threads`` in bounds and ``--results-dir`` writable, its peaks readable, before measuring."""
    from bench.run.records import prepare_results_dir
    from bench.measure.roofline import ROOFLINE_FILE, read_measurements

    if args.threads is not None:
        check_bound("--threads", args.threads, THREADS)
    path = prepare_results_dir(args.results_dir) / ROOFLINE_FILE
    refuse_link(path, "; move it away")  # before measuring: the write would refuse it
    read_measurements(path)


def writable_file(path: str, option: str) -> None:
    """Prove ``path`` can be written (a temporary beside it; nothing is created, no link followed)."""
    check_writable_file(path, option)


def _passed_on(run_args: list[str]) -> argparse.Namespace:
    """The flags passed to every run, parsed alone: errors name no combination."""
    try:
        args = parse_run_args(run_args)
    except BenchError as exc:
        raise BenchError(f"the flags passed to every run: {exc}") from None
    if args.resume:
        raise BenchError("--resume continues one run; resume each with `bench run --resume CHECKPOINT`")
    return args


def _check_runs(runs: dict[str, list[str]]) -> list[Config]:
    """Each run's config (validated), its memory, its data (once per distinct data
    setting), and the results directory: everything a child would refuse at its start.
    ``runs`` maps a label (named in the error) to the run's arguments."""
    from bench.run.budget import check_memory
    from bench.run.records import DEFAULT_RESULTS_DIR, prepare_results_dir
    from bench.tasks import make_task

    configs, fitted = [], set()
    for label, argv in runs.items():
        try:
            args = parse_run_args(argv)
            config = config_from_args(args)
            check_memory(config)
            data = (config.replace(backend="", impl=None, cell=""), args.data_dir)  # all make_task reads
            if data not in fitted:
                make_task(config, args.data_dir)
                fitted.add(data)
        except BenchError as exc:
            raise BenchError(f"{label}: {exc}") from None
        configs.append(config)
    if runs:  # the runs share the flags, so one directory: where `bench run` writes without --results-dir
        prepare_results_dir(args.results_dir or DEFAULT_RESULTS_DIR)
    return configs


def seed_list(seeds: str | None, repeats: int | None, run_args: list[str], swept: str | None = None) -> list[int] | None:
    """The seeds every combination runs with: ``--seeds 0,1,2`` (each a valid seed, none
    twice), or ``--repeats N`` (N seeds from the ``--seed`` passed on, else from 0); None
    when neither is given (each combination runs once, with the seed the flags give)."""
    from bench.config import core_options

    if seeds is None and repeats is None:
        return None
    if seeds is not None and repeats is not None:
        raise BenchError("--seeds and --repeats both choose the seeds; give one of them")
    if swept == "seed":
        raise BenchError(f"--param seed varies the seed already; drop {'--seeds' if seeds is not None else '--repeats'}")
    bound = core_options()["seed"].bound
    given = _passed_on(run_args).seed
    if seeds is not None:
        if given is not None:
            raise BenchError("--seed and --seeds: give the seeds in --seeds only")
        chosen = []
        for text in items(seeds, "--seeds", "seed"):
            try:
                value = int(text)
            except ValueError:
                raise BenchError(f"--seeds must list integers, got {text!r}") from None
            check_bound("--seeds", value, bound)
            if value in chosen:
                raise BenchError(f"--seeds must give each seed once, got {value} twice in {seeds!r}")
            chosen.append(value)
        return chosen
    check_bound("--repeats", repeats, Bound(1, INT32_MAX))
    first = 0 if given is None else given
    check_bound(f"--repeats {repeats} from --seed {first}: the last seed", first + repeats - 1, bound)
    return list(range(first, first + repeats))

