"""The GPU half of cellbench, as one prepared check: every GPU path run once, figures kept.

    python tests/benchmarks/gpu_check.py OUT

in under 8 minutes on one GPU, with nothing fetched from the network:

1. the device and every library's version (``environment.json``);
2. the conformance kit (``bench.testing``: every check of every cell variant on every task)
   for torch (``cell``; ``fused``, cuDNN) and JAX (``cell``, ``fused``) on the GPU, in
   float32, against the float64 reference on the CPU, at the kit's float32 tolerances
   (``conformance.json``);
3. ``bench speed`` at ptb-small and ptb-medium on the GPU for the LSTM, GRU and RNN, each
   row naming the kernel that ran (``speed-ptb-small.json``, ``speed-ptb-medium.json``);
4. whether two models built from the same seed and trained on the same windows end with
   bit-identical losses and weights on the GPU (``determinism.json``);
5. all of it as one page, ``summary.md``.

OUT must be new or empty. What is missing (a GPU, a package, cellbench's entry points) is
said in one line, exit 2, before any work. ``--device cpu`` runs the same parts on the CPU
(the layout and the refusals are tested so in CI; its figures say nothing of a GPU), and
the other flags make a part smaller or leave it out (``--help``).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # run as a script: the repository's packages first
    sys.path.insert(0, str(REPO_ROOT))

PARTS = ("conformance", "speed", "determinism")
BACKENDS = ("torch", "jax")
CELLS = ("lstm", "gru", "rnn")
PRESETS = ("ptb-small", "ptb-medium")
# imported by cellbench on this path (bench run, the kit, bench speed), by import name
NEEDED = ("numpy", "pandas", "scipy", "jsonschema", "tqdm", "threadpoolctl", "matplotlib")
FRAMEWORKS = {"torch": ("torch",), "jax": ("jax", "flax")}
DETERMINISM_WINDOWS = 10
EXIT_USER_ERROR = 2


class Refusal(Exception):
    """What stops the check before any work: one line, exit 2."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="directory for every table and record (new or empty)")
    parser.add_argument("--device", choices=("gpu", "cpu"), default="gpu",
                        help="gpu (default; refused without one) or cpu: the same parts on the CPU, for tests")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)} (default: all)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated, of torch, jax (default: both)")
    parser.add_argument("--cells", default=",".join(CELLS),
                        help="cells of the speed and determinism parts (default: lstm,gru,rnn; conformance takes "
                             "every registered cell in every choice of its options)")
    parser.add_argument("--checks", help="the kit's checks to run, comma-separated (default: all)")
    parser.add_argument("--conformance-cells", help="cell variants of the conformance part, e.g. lstm,gru:reset_gate=before "
                                                    "(default: every registered cell in every choice of its options)")
    parser.add_argument("--presets", default=",".join(PRESETS), help="presets of the speed part (default: ptb-small,ptb-medium)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of bench speed (default: 2)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per phase and round (default: 20)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (default: 5)")
    parser.add_argument("--workers", type=int, default=min(12, os.cpu_count() or 1),
                        help="processes running conformance cases side by side (default: min(12, cores))")
    args = parser.parse_args(argv)
    for name, valid in (("parts", PARTS), ("backends", BACKENDS)):
        chosen = [v for v in getattr(args, name).split(",") if v]
        if not chosen or any(v not in valid for v in chosen):
            parser.error(f"--{name} takes a comma-separated list of {', '.join(valid)}, got {getattr(args, name)!r}")
        setattr(args, name, chosen)
    for name in ("cells", "presets", "checks", "conformance_cells"):
        value = getattr(args, name)
        setattr(args, name, [v for v in value.split(",") if v] if value else None)
    for name in ("rounds", "steps", "warmup", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    return args


# -- before any work: what is missing -----------------------------------------------------


def missing_modules(backends: Sequence[str]) -> list[str]:
    """Import names this check needs that are not installed (frameworks of ``backends`` too)."""
    names = list(NEEDED) + [m for b in backends for m in FRAMEWORKS[b]]
    return [name for name in names if importlib.util.find_spec(name) is None]


def gpu_reason(backend: str) -> str | None:
    """Why ``backend`` cannot run on a GPU here, or None where it can."""
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return None
        built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU build"
        return f"torch {torch.__version__} ({built}) sees no CUDA GPU"
    from backends.jax.runtime import import_jax

    jax = import_jax()
    try:
        if jax.devices("gpu"):
            return None
    except RuntimeError:
        pass
    return f"JAX {jax.__version__} sees no GPU (platforms: {', '.join(sorted({d.platform for d in jax.devices()}))})"


def preflight(args: argparse.Namespace) -> list[str]:
    """The backends that will run; :class:`Refusal` naming everything that is missing."""
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise Refusal(f"{out} is not an empty directory: give a new one (nothing is overwritten)")
    if missing := missing_modules(()):  # before cellbench's own imports, which need them
        raise Refusal(f"missing Python packages: {', '.join(missing)} (no network here: carry their wheels)")
    from bench import testing
    from bench.errors import BenchError
    from bench.registry import backend_names, cell_names

    try:
        backend_names(), cell_names()
    except BenchError as why:
        raise Refusal(str(why)) from None
    if unknown := [c for c in args.checks or () if c not in testing.CHECKS]:
        raise Refusal(f"--checks: unknown {', '.join(unknown)}; choose of {', '.join(testing.CHECKS)}")
    if unknown := [c for c in args.cells + [v.partition(':')[0] for v in args.conformance_cells or ()]
                   if c not in cell_names()]:
        raise Refusal(f"unknown cell {', '.join(unknown)}; choose of {', '.join(cell_names())}")
    from bench.config import presets

    if unknown := [p for p in args.presets if p not in presets()]:
        raise Refusal(f"unknown preset {', '.join(unknown)}; choose of {', '.join(presets())}")
    if missing := missing_modules(args.backends):  # the frameworks: after the choices, checked without them
        raise Refusal(f"missing Python packages: {', '.join(missing)} (no network here: carry their wheels)")
    if args.device == "cpu":
        return list(args.backends)
    reasons = {backend: gpu_reason(backend) for backend in args.backends}
    if all(reasons.values()):
        raise Refusal("no GPU: " + "; ".join(reasons.values()))
    for backend, why in reasons.items():
        if why:
            print(f"gpu-check: {backend} is left out: {why}", file=sys.stderr, flush=True)
    return [backend for backend, why in reasons.items() if not why]


# -- the parts ------------------------------------------------------------------------------


def environment(backends: Sequence[str], device: str) -> dict[str, Any]:
    """The machine, the device each framework sees and every library's version."""
    from bench.run.records import cpu_model, git_commit

    info: dict[str, Any] = {"python": platform.python_version(), "cpu": cpu_model(), "cores": os.cpu_count(),
                            "platform": platform.platform(), "git_commit": git_commit(), "device": device}
    import numpy

    info["numpy"] = numpy.__version__
    if "torch" in backends:
        import torch

        info["torch"] = {"version": torch.__version__, "cuda": torch.version.cuda,
                         "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                         "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    if "jax" in backends:
        from backends.jax.runtime import import_jax, versions

        jax = import_jax()
        info["jax"] = {**versions(), "devices": [f"{d.platform}:{d.device_kind}" for d in jax.devices()]}
    return info


def _run_case(key: str, backend: str, impl: str, task: str, check: str, device: str) -> dict[str, Any]:
    """One conformance case in a worker process: passed, failed (what differs) or skipped (why)."""
    from bench import testing
    from tests.conformance_cases import make_variant

    case = testing.Case(make_variant(key), key, backend, impl, task, check, device)
    start = time.perf_counter()
    try:
        case.run()
        status, message = "passed", ""
    except testing.Unsupported as why:
        status, message = "skipped", str(why)
    except AssertionError as what:
        status, message = "failed", str(what)
    except Exception as error:  # a crash on the GPU path is a finding, not the end of the check
        status, message = "failed", f"{type(error).__name__}: {error}"
    return {"case": str(case), "cell": key, "backend": backend, "impl": impl, "task": task, "check": check,
            "status": status, "message": message, "seconds": round(time.perf_counter() - start, 3)}


def conformance(args: argparse.Namespace, backends: Sequence[str]) -> dict[str, Any]:
    """Every kit case of the chosen cell variants on ``backends``, ``--workers`` at a time."""
    from bench import testing
    from tests.conformance_cases import cell_variants, make_variant

    checks = tuple(args.checks or testing.CHECKS)
    jobs = [(key, case.backend, case.impl, case.task, case.check_name, args.device)
            for key in args.conformance_cells or cell_variants()
            for case in testing.cases(make_variant(key), key, list(backends), checks)]
    results = []
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_run_case, *job) for job in jobs]
        for i, future in enumerate(futures, 1):
            results.append(future.result())
            if results[-1]["status"] == "failed" or i % 25 == 0 or i == len(futures):
                print(f"conformance {i}/{len(futures)}: {results[-1]['case']} {results[-1]['status']}"
                      f" {results[-1]['message']}".rstrip(), flush=True)
    counts = {status: sum(r["status"] == status for r in results) for status in ("passed", "failed", "skipped")}
    return {"device": args.device, "counts": counts, "cases": results}


def speed(args: argparse.Namespace, backends: Sequence[str], out: Path) -> dict[str, Any]:
    """``bench speed`` per preset, each table as bench speed writes it (``--out``)."""
    tables = {}
    for preset in args.presets:
        path = out / f"speed-{preset}.json"
        command = [sys.executable, "-m", "bench", "speed", "--preset", preset, "--backends", ",".join(backends),
                   "--cells", ",".join(args.cells), "--device", args.device, "--rounds", str(args.rounds),
                   "--steps", str(args.steps), "--warmup", str(args.warmup), "--out", str(path)]
        print("+ " + " ".join(command[1:]), flush=True)
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
        print(done.stdout, end="", flush=True)
        if done.returncode:
            tables[preset] = {"error": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]}
            print(f"speed {preset}: {tables[preset]['error']}", flush=True)
        else:
            tables[preset] = {"table": done.stdout, "file": path.name}
    return tables


def _train_twice(backend: str, impl: str, cell: str, device: str) -> dict[str, Any]:
    """Two models from seed 0 trained on the same ptb-small windows: identical to the bit?"""
    import numpy as np

    from backends.spec import random_window
    from bench.measure.speed import preset_spec
    from bench.run.factory import build_model

    config, spec = preset_spec("ptb-small", cell, {"backend": backend, "impl": impl, "device": device, "seed": 0})
    rng = np.random.default_rng(1)
    windows = [random_window(spec, config.batch_size, config.num_steps, rng) for _ in range(DETERMINISM_WINDOWS)]
    runs = []
    for _ in range(2):
        model = build_model(config, spec)
        state, losses = model.zero_state(config.batch_size), []
        for x, y in windows:
            stats, state = model.train_step(x, y, state, config.learning_rate)
            losses.append(stats.loss_sum)
        runs.append((np.array(losses), {k: np.array(v) for k, v in model.checkpoint().items()}))
    (loss_a, weights_a), (loss_b, weights_b) = runs
    differing = sorted(k for k in weights_a if not np.array_equal(weights_a[k], weights_b[k]))
    largest = max((float(np.max(np.abs(weights_a[k] - weights_b[k]))) for k in differing), default=0.0)
    return {"backend": backend, "impl": impl, "cell": cell, "kernel": model.describe().get("kernel"),
            "identical": bool(np.array_equal(loss_a, loss_b)) and not differing,
            "losses_identical": bool(np.array_equal(loss_a, loss_b)),
            "largest_loss_difference": float(np.max(np.abs(loss_a - loss_b))),
            "differing_arrays": differing, "largest_weight_difference": largest, "windows": DETERMINISM_WINDOWS}


def determinism(args: argparse.Namespace, backends: Sequence[str]) -> list[dict[str, Any]]:
    """:func:`_train_twice` for every backend x impl x cell, each in a fresh process."""
    from bench.registry import get_backend, make_cell

    rows = []
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        for backend in backends:
            for impl in get_backend(backend).impls:
                for cell in args.cells:
                    if why := get_backend(backend).unsupported(make_cell(cell), impl):
                        rows.append({"backend": backend, "impl": impl, "cell": cell, "skipped": why})
                        continue
                    try:
                        rows.append(pool.submit(_train_twice, backend, impl, cell, args.device).result())
                    except Exception as error:
                        rows.append({"backend": backend, "impl": impl, "cell": cell, "error": f"{type(error).__name__}: {error}"})
                    row = rows[-1]
                    said = row.get("error") or ("identical" if row["identical"] else
                                                f"NOT identical (largest weight difference {row['largest_weight_difference']:.3g})")
                    print(f"determinism {backend}/{impl} {cell}: {said}", flush=True)
    return rows


# -- the page --------------------------------------------------------------------------------


def summary(env: dict[str, Any], parts: dict[str, Any], seconds: dict[str, float]) -> str:
    """Everything the check found, as one Markdown page."""
    lines = ["# GPU check", "", f"Device: {env['device']}; " + "; ".join(
        f"{name} {info['version'] if isinstance(info, dict) and 'version' in info else info}"
        for name, info in env.items() if name in ("python", "numpy")), ""]
    if "torch" in env:
        t = env["torch"]
        lines.append(f"- torch {t['version']}, CUDA {t['cuda']}, cuDNN {t['cudnn']}, GPU {t['gpu']}")
    if "jax" in env:
        j = env["jax"]
        lines.append(f"- JAX {j.get('jax')}, jaxlib {j.get('jaxlib')}, flax {j.get('flax')}, devices {', '.join(j['devices'])}")
    commit = env["git_commit"].get("commit")
    commit = f"{commit[:10]}{' with uncommitted changes' if env['git_commit'].get('dirty') else ''}" if commit else "unknown (no git here)"
    lines += [f"- CPU {env['cpu']} ({env['cores']} cores), commit {commit}", "",
              "Seconds per part: " + ", ".join(f"{part} {s:.0f}" for part, s in seconds.items()), ""]
    if "conformance" in parts:
        c = parts["conformance"]
        lines += ["## Conformance (float32 on the device against the float64 reference)", "",
                  "passed {passed}, failed {failed}, skipped {skipped}".format(**c["counts"]), ""]
        lines += [f"- FAILED {r['case']}: {r['message']}" for r in c["cases"] if r["status"] == "failed"]
        lines.append("")
    for preset, table in parts.get("speed", {}).items():
        lines += [f"## Speed, {preset}", ""]
        lines += ["```", table["table"].rstrip(), "```"] if "table" in table else [f"failed: {table['error']}"]
        lines.append("")
    if "determinism" in parts:
        lines += ["## Same seed twice", "", "| backend/impl | cell | kernel | identical |", "|---|---|---|---|"]
        for r in parts["determinism"]:
            said = r.get("skipped") or r.get("error") or ("yes" if r["identical"] else
                                                          f"no: weights differ by up to {r['largest_weight_difference']:.3g}")
            lines.append(f"| {r['backend']}/{r['impl']} | {r['cell']} | {r.get('kernel', '')} | {said} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX shares the GPU with torch and the workers
    try:
        backends = preflight(args)
    except Refusal as why:
        print(f"gpu-check: {why}", file=sys.stderr)
        return EXIT_USER_ERROR
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = environment(backends, args.device)
    (out / "environment.json").write_text(json.dumps(env, indent=1))
    print(json.dumps(env, indent=1), flush=True)
    parts: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    try:
        for part in args.parts:
            start = time.perf_counter()
            if part == "conformance":
                parts[part] = conformance(args, backends)
                (out / "conformance.json").write_text(json.dumps(parts[part], indent=1))
            elif part == "speed":
                parts[part] = speed(args, backends, out)
            else:
                parts[part] = determinism(args, backends)
                (out / "determinism.json").write_text(json.dumps(parts[part], indent=1))
            seconds[part] = time.perf_counter() - start
            print(f"gpu-check: {part} took {seconds[part]:.0f} s", flush=True)
    finally:
        (out / "summary.md").write_text(summary(env, parts, seconds))
    failed = parts.get("conformance", {}).get("counts", {}).get("failed", 0)
    broken = [p for p, t in parts.get("speed", {}).items() if "error" in t]
    broken += [f"{r['backend']}/{r['impl']} {r['cell']}" for r in parts.get("determinism", []) if "error" in r]
    print(f"gpu-check: {failed} conformance failures, {len(broken)} parts broken; everything is in {out}")
    return 1 if failed or broken else 0


if __name__ == "__main__":
    sys.exit(main())
