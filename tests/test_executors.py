"""Executors and seeds of `bench matrix` and `bench sweep`: the flags' errors (one line, exit
2, nothing run), one job per seed, and the ray executor on a real Ray instance on
127.0.0.1 (started once for the module, shut down after even when a test fails): its
records equal the local executor's but for timing and environment, a run whose process is
killed is run again and then recorded lost, and Ctrl-C brings back the records of the runs
in flight."""
from __future__ import annotations

import errno
import importlib.util
import faulthandler
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from bench.cli import main
from bench.fanout.jobs import Outcome, run_matrix, run_sweep
from bench.fanout.preflight import seed_list
from tests.faults.helpers import leftovers, records_in

ECHO = ["--total-series-length", "1500", "--threads", "1"]
RAY_MODULE_SECONDS = 600  # the whole module's Ray tests: past this, pytest is stopped with every thread's stack
# What a record may differ in between two executors: where, when and how fast it ran.
NEEDS_RAY = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray is not installed: the address is checked once Ray is found")
TIMING = {"run_id", "started_at", "finished_at", "peak_rss_mb", "environment", "seconds", "tokens_per_s",
          "tokens_per_s_median", "tokens_per_s_min", "tokens_per_s_max", "ms_per_step_median", "gflops_per_s",
          "timed_stretches"}


# -- flags: one line, exit 2, before anything runs -----------------------------------------


@pytest.mark.parametrize("argv,message", [
    (["matrix", "--address", "auto"], "--address auto joins a Ray cluster: add --executor ray"),
    pytest.param(["matrix", "--executor", "ray", "--address", "localhost"], "--address must be auto, HOST:PORT or ray://HOST:PORT",
                 marks=NEEDS_RAY),
    pytest.param(["matrix", "--executor", "ray", "--address", "ray://head:99999"], "(port 1 to 65535), got 'ray://head:99999'",
                 marks=NEEDS_RAY),
    (["matrix", "--seeds", "0,1,0"], "--seeds must give each seed once, got 0 twice"),
    (["matrix", "--seeds", "0,00"], "--seeds must give each seed once, got 0 twice in '0,00'"),
    (["matrix", "--seeds", "1,x"], "--seeds must list integers, got 'x'"),
    (["matrix", "--seeds=-1,2"], "--seeds must be an integer in [0, 2**63 - 1]"),
    (["matrix", "--seeds", "1,,2"], "--seeds must not have an empty seed"),
    (["matrix", "--seeds", "1", "--repeats", "2"], "--seeds and --repeats both choose the seeds; give one of them"),
    (["matrix", "--repeats", "0"], "--repeats must be an integer in [1, 2**31 - 1], got 0"),
    (["matrix", "--seeds", "1,2", "--seed", "3"], "--seed and --seeds: give the seeds in --seeds only"),
    (["matrix", "--repeats", "2", f"--seed={2**63 - 1}"], "the last seed must be an integer in [0, 2**63 - 1]"),
    (["sweep", "--param", "seed", "--values", "1,2", "--repeats", "2"], "--param seed varies the seed already"),
    (["matrix", "--seed=-1"], "--seed must be an integer in [0, 2**63 - 1]"),  # passed on, not --seeds
])
def test_fan_out_flags_fail_in_one_line_before_any_run(capsys, tmp_path, argv, message):
    results = tmp_path / "results"
    code = main([*argv, "--backends" if argv[0] == "matrix" else "--cells", "rnn" if argv[0] == "sweep" else "numpy",
                 *ECHO, "--results-dir", str(results)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert not list(results.rglob("*.json")) if results.exists() else True


def test_ray_executor_without_ray_installed_names_the_install_command(capsys, monkeypatch):
    import bench.fanout.executors as executors

    real = executors.importlib.util.find_spec
    monkeypatch.setattr(executors.importlib.util, "find_spec", lambda name: None if name == "ray" else real(name))
    assert main(["matrix", "--executor", "ray", "--backends", "numpy", *ECHO]) == 2
    err = capsys.readouterr().err
    assert err == "error: --executor ray needs Ray, which is not installed: pip install 'cellbench[ray]'\n"


@pytest.mark.parametrize("extra,message", [
    ([], "--executor ray reserves each run's --threads CPUs on a node: pass --threads N"),
    (["--threads", "1", "--device", "auto"], "pass --device cpu or gpu, not auto"),
])
def test_ray_runs_say_what_they_reserve(capsys, tmp_path, extra, message):
    pytest.importorskip("ray")
    argv = ["matrix", "--executor", "ray", "--backends", "numpy", "--cells", "rnn", "--total-series-length", "1500",
            *extra, "--results-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not list(tmp_path.rglob("*.json"))


def _where_ray_connects(address: str) -> str:
    """HOST:PORT that Ray connects to for ``address``: 127.0.0.1 becomes this node's address."""
    from ray._private.services import canonicalize_bootstrap_address

    return canonicalize_bootstrap_address(address)


def _via(address: str) -> str:
    there = _where_ray_connects(address)
    return "" if there == address else f", where Ray connects for {address}"


def test_an_address_where_nothing_listens_fails_at_once(capsys, tmp_path):
    """Ray would retry it for minutes."""
    pytest.importorskip("ray")
    started = time.monotonic()
    argv = ["matrix", "--executor", "ray", "--address", "127.0.0.1:1", "--backends", "numpy", "--cells", "rnn", *ECHO,
            "--results-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == (f"error: --address 127.0.0.1:1: nothing answers at {_where_ray_connects('127.0.0.1:1')} (Connection "
                   f"refused){_via('127.0.0.1:1')}; is `ray start --head` running there?\n")
    assert time.monotonic() - started < 30


class _Listener:
    """A plain TCP listener that accepts connections and never says a word, on ``host``
    (port chosen by the system), for the life of a ``with`` block."""

    def __init__(self, host: str) -> None:
        self.socket = socket.create_server((host, 0))
        self.socket.settimeout(0.05)  # a closed socket does not wake accept(): it looks at `done` instead
        self.port = self.socket.getsockname()[1]
        self.held: list[socket.socket] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self.done.is_set():
            try:
                self.held.append(self.socket.accept()[0])
            except TimeoutError:
                continue

    def __enter__(self) -> "_Listener":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join(timeout=5)
        self.socket.close()
        for connection in self.held:
            connection.close()


def _matrix_at(capsys, address: str, results: Path) -> tuple[int, str, str, float]:
    """`bench matrix --executor ray --address ADDRESS`: exit status, stdout, stderr, seconds."""
    started = time.monotonic()
    code = main(["matrix", "--executor", "ray", "--address", address, "--backends", "numpy", "--cells", "rnn", *ECHO,
                 "--results-dir", str(results)])
    out, err = capsys.readouterr()
    return code, out, err, time.monotonic() - started


@pytest.mark.parametrize("where", ["127.0.0.1", "where Ray connects"])
def test_an_address_where_something_else_listens_fails_in_one_line_within_seconds(capsys, tmp_path, monkeypatch,
                                                                                  where):
    """As found: a plain TCP listener passed the reachability check and Ray then hung for
    minutes printing its warnings. On 127.0.0.1 Ray connects elsewhere (this node's
    address), where nothing listens; where Ray does connect, the listener never answers the
    HTTP/2 preface a Ray head answers at once."""
    pytest.importorskip("ray")
    from bench.fanout.executors import ray_cluster

    monkeypatch.setattr(ray_cluster, "PROBE_SECONDS", 1.0)
    host = "127.0.0.1" if where == "127.0.0.1" else _where_ray_connects("127.0.0.1:1").rpartition(":")[0]
    with _Listener(host) as listener:
        address = f"{host}:{listener.port}"
        code, out, err, seconds = _matrix_at(capsys, address, tmp_path)
    assert code == 2 and out == "" and err.startswith(f"error: --address {address}: ") and err.count("\n") == 1, err
    there = _where_ray_connects(address)
    if there == address:  # Ray connects to the listener itself
        assert err == (f"error: --address {address}: what listens at {address} is not a Ray head (it accepted the "
                       "connection, then said nothing within 1 s); pass the address `ray start --head` printed\n")
    else:
        assert f"nothing answers at {there} (Connection refused){_via(address)}" in err, err
    assert seconds < 10


def test_a_grpc_server_that_is_not_ray_is_refused_in_one_line(capsys, tmp_path, monkeypatch):
    """An HTTP/2 server passes the preface; Ray's GCS method then tells a Ray head from it."""
    pytest.importorskip("ray")
    grpc = pytest.importorskip("grpc")
    from concurrent import futures

    from bench.fanout.executors import ray_cluster

    monkeypatch.setattr(ray_cluster, "PROBE_SECONDS", 1.0)
    host = _where_ray_connects("127.0.0.1:1").rpartition(":")[0]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port(f"{host}:0")
    server.start()
    try:
        code, out, err, seconds = _matrix_at(capsys, f"{host}:{port}", tmp_path)
    finally:
        server.stop(grace=None)
    assert code == 2 and err == (f"error: --address {host}:{port}: what listens at {host}:{port} is not a Ray head (a "
                                 "gRPC server, but one that does not know Ray's "
                                 "/ray.rpc.NodeInfoGcsService/GetClusterId); pass the address `ray start --head` "
                                 "printed\n"), err
    assert seconds < 10


def test_ctrl_c_while_ray_starts_lists_every_run_as_not_run(monkeypatch, capsys):
    pytest.importorskip("ray")
    from bench.fanout.executors.ray_cluster import RayExecutor
    from bench.fanout.jobs import print_outcomes

    def interrupted(self):
        raise KeyboardInterrupt("SIGINT")

    monkeypatch.setattr(RayExecutor, "_connect", interrupted)
    outcomes = run_matrix(["numpy"], ["rnn", "lstm"], None, ECHO, seeds=[0, 1], executor=RayExecutor())
    assert [o.status for o in outcomes] == ["not run"] * 4
    assert print_outcomes(outcomes) == 130


def test_seeds_multiply_every_combination_and_label_each_seed():
    seen = []

    def executor(jobs):
        seen.extend(jobs)
        return [Outcome(label, "completed", 0.0) for label, _ in jobs]

    run_matrix(["numpy"], ["rnn", "lstm"], None, ECHO, seeds=[0, 5], executor=executor)
    assert [label for label, _ in seen] == ["numpy/cell rnn seed=0", "numpy/cell rnn seed=5",
                                            "numpy/cell lstm seed=0", "numpy/cell lstm seed=5"]
    assert all(argv[-2:] == ["--seed", label.rsplit("=", 1)[1]] for label, argv in seen)
    seen.clear()
    run_sweep("echo_step", ["1", "2"], ["gru"], "numpy", None, ECHO, seeds=[3], executor=executor)
    assert [label for label, _ in seen] == ["numpy gru echo_step=1 seed=3", "numpy gru echo_step=2 seed=3"]
    seen.clear()
    run_matrix(["numpy"], ["rnn"], None, ECHO, executor=executor)  # no seeds: one job, labels as before
    assert [label for label, _ in seen] == ["numpy/cell rnn"] and "--seed" not in seen[0][1]


def test_repeats_count_from_the_seed_passed_on():
    assert seed_list(None, 3, ECHO) == [0, 1, 2]
    assert seed_list(None, 2, [*ECHO, "--seed", "7"]) == [7, 8]
    assert seed_list("4,2", None, ECHO) == [4, 2]
    assert seed_list(None, None, [*ECHO, "--seed", "7"]) is None


def test_seed_passed_on_to_a_matrix_reaches_every_run(tmp_path, capsys):
    """`--seed` is not read as an abbreviation of `--seeds`: it goes to each run."""
    assert main(["matrix", "--backends", "numpy", "--cells", "rnn", "--seed", "11", *ECHO, "--epochs", "1", "--quiet",
                 "--results-dir", str(tmp_path)]) == 0
    (record,) = records_in(tmp_path)
    assert record["seed"] == 11
    assert main(["matrix", "--backends", "numpy", "--cells", "rnn", "--repeats", "2", "--seed", "11", *ECHO, "--epochs",
                 "1", "--quiet", "--results-dir", str(tmp_path / "repeats")]) == 0
    records = records_in(tmp_path / "repeats")
    assert sorted(r["seed"] for r in records) == [11, 12]
    assert all(" ".join(r["command"]).count("--seed") == 1 for r in records)  # where the seeds start, not passed on


# -- the ray executor on a real local Ray ----------------------------------------------------


@pytest.fixture(scope="module")
def ray_address():
    """A Ray instance of 2 CPUs on 127.0.0.1 for this module; its address for a driver of
    our own to join. Shut down after the module, whatever happened."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray's switch to stay on the loopback address
    ray = pytest.importorskip("ray")  # CI installs .[all], which has it; tox's one-framework envs do not
    faulthandler.dump_traceback_later(RAY_MODULE_SECONDS, exit=True)
    try:
        context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        try:
            yield context.address_info["gcs_address"]
        finally:
            ray.shutdown()
    finally:
        faulthandler.cancel_dump_traceback_later()


def _differences(a, b, path=()):
    """The paths of the leaves in which two records differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            yield from _differences(a.get(key), b.get(key), (*path, key))
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from _differences(x, y, (*path, i))
    elif a != b:
        yield path


def test_ray_records_equal_the_local_executors_but_for_timing_and_environment(ray_address, tmp_path, capsys):
    from bench.fanout.executors.ray_cluster import RayExecutor

    runs = {}
    for name, executor in (("local", None), ("ray", RayExecutor())):
        args = [*ECHO, "--epochs", "2", "--results-dir", str(tmp_path / "results")]  # not quiet: results compared
        outcomes = run_matrix(["numpy"], ["rnn", "lstm"], None, args, seeds=[0, 1], executor=executor)
        assert [o.status for o in outcomes] == ["completed"] * 4, outcomes
        runs[name] = (outcomes, {(r["config"]["cell"], r["seed"]): r for r in records_in(tmp_path / "results")})
        (tmp_path / "results").rename(tmp_path / name)
    (local, local_records), (ray, ray_records) = runs["local"], runs["ray"]
    assert [(o.label, o.status, o.result) for o in local] == [(o.label, o.status, o.result) for o in ray]
    assert all(o.result.startswith("test loss ") for o in ray)
    assert sorted(local_records) == sorted(ray_records) == [("lstm", 0), ("lstm", 1), ("rnn", 0), ("rnn", 1)]
    for key, record in local_records.items():
        other = ray_records[key]
        untimed = [path for path in _differences(record, other) if not TIMING & {str(p) for p in path}]
        assert untimed == [], (key, untimed)
        assert record["final"]["test"]["loss"] == other["final"]["test"]["loss"]
        assert record["command"] == other["command"] and other["checkpoint"] is None
    assert local_records[("rnn", 0)]["final"]["test"]["loss"] != local_records[("rnn", 1)]["final"]["test"]["loss"]
    assert not list((tmp_path / "ray").glob("checkpoints/*.npz"))


def test_records_that_come_back_to_a_read_only_directory_are_kept_elsewhere(ray_address, tmp_path, capsys,
                                                                             monkeypatch):
    """As found: the results directory turned read-only after the first record came back;
    the other runs had completed on the workers, their records were written nowhere and the
    summary said `aborted`. Now each record is written to the rescue directory, the summary
    says `completed` and where each record is, and a checkpoint that came back too is named
    by its record where it is."""
    import bench.storage as storage
    from bench.fanout.executors.ray_cluster import RayExecutor
    from bench.run.records import rescue_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    results = tmp_path / "results"
    original, written = storage._new_temporary, {"n": 0}

    def read_only_after_the_first_record(dir_fd, where, stem, *args, **kwargs):
        if Path(where) == results and written["n"]:
            raise OSError(errno.EROFS, "Read-only file system")  # as root chmod would not stop the write
        written["n"] += Path(where) == results and stem.endswith(".json")
        return original(dir_fd, where, stem, *args, **kwargs)

    monkeypatch.setattr(storage, "_new_temporary", read_only_after_the_first_record)
    args = [*ECHO, "--epochs", "1", "--keep-checkpoint", "--quiet", "--results-dir", str(results)]
    outcomes = run_matrix(["numpy"], ["rnn"], None, args, seeds=[0, 1, 2], executor=RayExecutor())
    assert [o.status for o in outcomes] == ["completed"] * 3, outcomes
    (first,) = records_in(results)
    rescued = records_in(rescue_dir())
    assert len(rescued) == 2 and all(r["status"] == "completed" and len(r["epochs"]) == 1 for r in rescued)
    assert sorted(r["seed"] for r in [first, *rescued]) == [0, 1, 2]
    for record in rescued:
        outcome = next(o for o in outcomes if o.label.endswith(f"seed={record['seed']}"))
        path = rescue_dir() / f"{record['run_id']}.json"
        assert outcome.detail == (f"its record could not be written to {results / path.name} (Read-only file system); "
                                  f"it is at {path} instead"), outcome.detail
        checkpoint = results / "checkpoints" / f"{record['run_id']}.npz"  # that directory took it
        assert record["checkpoint"] == str(checkpoint) and checkpoint.is_file()
    assert f"== numpy/cell rnn seed=" in capsys.readouterr().err


def test_the_ptb_corpus_travels_to_the_workers_through_ray(ray_address, tmp_path, ptb_dir, capsys):
    """The driver reads the corpus and sends it; the run checks it on the worker, and its
    record names the corpus directory the driver was given, as a local run's would."""
    from bench.fanout.executors.ray_cluster import RayExecutor

    args = ["--preset", "ptb-tiny", "--data-dir", str(ptb_dir), "--threads", "1", "--epochs", "1",
            "--results-dir", str(tmp_path)]
    (outcome,) = run_matrix(["numpy"], ["rnn"], None, args, executor=RayExecutor())
    assert outcome.status == "completed", outcome
    (record,) = records_in(tmp_path)
    assert record["data_dir"] == str(ptb_dir) and record["config"]["task"] == "ptb"
    err = capsys.readouterr().err
    assert f"record {tmp_path}/{record['run_id']}.json" in err and "cellbench-ray-" not in err  # paths as here


def _bench_runs(marker: str) -> dict[int, list[str]]:
    """pid -> command line of every `bench run` process whose command line holds ``marker``."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if marker in argv and "bench" in argv and "run" in argv:
                found[int(entry)] = argv
    return found


def _started(argv: list[str]) -> bool:
    """The run has written its record (it is past its set-up) in its worker's directory."""
    results = Path(argv[len(argv) - 1 - argv[::-1].index("--results-dir") + 1])
    return any(results.glob("*.json"))


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _killer(marker: str, kills: dict[str, int], worker_kills: dict[str, int], done: threading.Event) -> None:
    """SIGKILL each `bench run` of a cell and seed (``"rnn 0"``) once it is under way,
    ``kills[run]`` times in all, or the Ray worker that started it, ``worker_kills[run]`` times."""
    seen: set[int] = set()
    while not done.is_set():
        for pid, argv in _bench_runs(marker).items():
            cell = f"{argv[argv.index('--cell') + 1]} {argv[argv.index('--seed') + 1]}"
            if pid in seen or not _started(argv):
                continue
            try:
                if kills.get(cell, 0) > 0:
                    os.kill(pid, signal.SIGKILL)
                    kills[cell] -= 1
                elif worker_kills.get(cell, 0) > 0:
                    os.kill(_parent(pid), signal.SIGKILL)
                    worker_kills[cell] -= 1
            except OSError:
                continue
            seen.add(pid)
        time.sleep(0.05)


@pytest.mark.slow  # 16-18 s: two runs killed, each retried on Ray
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the runs to kill in /proc")
def test_a_killed_run_is_run_again_and_recorded_lost_if_it_dies_again(ray_address, tmp_path, capsys):
    from bench.fanout.executors.ray_cluster import RayExecutor

    marker = f"killed-{uuid.uuid4().hex[:8]}"
    kills = {"rnn 0": 2, "lstm 0": 1}  # one run dies at both attempts, one at its first
    worker_kills = {"rnn 1": 1}  # its Ray worker dies (and takes the run with it) once; lstm 1 is left alone
    done = threading.Event()
    killer = threading.Thread(target=_killer, args=(marker, kills, worker_kills, done), daemon=True)
    killer.start()
    try:
        args = [*ECHO, "--epochs", "150", "--quiet", "--tag", marker, "--results-dir", str(tmp_path)]
        outcomes = run_matrix(["numpy"], ["rnn", "lstm"], None, args, seeds=[0, 1], executor=RayExecutor())
    finally:
        done.set()
        killer.join()
    assert kills == {"rnn 0": 0, "lstm 0": 0} and worker_kills == {"rnn 1": 0}
    out = capsys.readouterr().out
    assert "(raylet)" not in out, out  # as found: a worker's death reached stdout, where the summary goes
    lost, worker_died, killed_once, alone = outcomes
    assert lost.status == "lost" and lost.detail.count("killed by SIGKILL") == 2 and lost.detail.startswith("retried: ")
    assert worker_died.status == "completed" and worker_died.detail.startswith("retried: its Ray worker failed")
    assert killed_once.status == "completed" and killed_once.detail.startswith("retried: its process was killed by SIGKILL")
    assert alone.status == "completed" and alone.detail == ""
    records = {(r["config"]["cell"], r["seed"]): r for r in records_in(tmp_path)}
    assert sorted(records) == [("lstm", 0), ("lstm", 1), ("rnn", 0), ("rnn", 1)]
    assert records[("rnn", 0)]["status"] == "running"  # the lost run's last attempt, as it was when killed
    assert all(records[key]["status"] == "completed" for key in (("rnn", 1), ("lstm", 0), ("lstm", 1)))


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the runs in flight in /proc")
def test_ctrl_c_brings_back_the_records_of_the_runs_in_flight(ray_address, tmp_path):
    """Ctrl-C in the terminal of a driver joined to the cluster: the two runs in flight save
    and return their records (interrupted, with checkpoints that resume here), the third is
    never started, the summary is the local executor's and the exit status 130."""
    marker = f"stopped-{uuid.uuid4().hex[:8]}"
    results = tmp_path / "r"
    process = subprocess.Popen(
        [sys.executable, "-m", "bench", "matrix", "--executor", "ray", "--address", ray_address, "--backends", "numpy",
         "--cells", "rnn,lstm,gru", *ECHO, "--epochs", "100000", "--tag", marker, "--results-dir", str(results)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (len(runs := _bench_runs(marker)) == 2 and all(map(_started, runs.values()))):
            assert time.monotonic() < deadline and process.poll() is None, "the runs did not start"
            time.sleep(0.1)
        time.sleep(1.0)  # an epoch or more each
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert "Traceback" not in err
    rows = out.splitlines()
    assert rows[0].startswith("combination") and len(rows) == 5 and rows[4].startswith("exit 130: "), out
    assert [row.split()[2] for row in rows[1:4]] == ["interrupted", "interrupted", "not"], out
    records = records_in(results)
    assert sorted(r["config"]["cell"] for r in records) == ["lstm", "rnn"]
    assert all(r["status"] == "interrupted" and r["epochs"] for r in records)
    assert not leftovers(results)
    record = records[0]
    assert Path(record["checkpoint"]).parent == results / "checkpoints" and Path(record["checkpoint"]).is_file()
    done = len(record["epochs"])
    resumed = subprocess.run([sys.executable, "-m", "bench", "run", "--resume", record["checkpoint"], "--epochs",
                              str(done + 1), "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    updated = json.loads((results / f"{record['run_id']}.json").read_text())  # the same record, here
    assert updated["status"] == "completed" and len(updated["epochs"]) == done + 1
