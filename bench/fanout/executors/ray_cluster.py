"""The ray executor: every run of a matrix or sweep as a Ray task, on a cluster
(``--address``) or on a Ray instance started for the call.

A task reserves ``--threads`` CPUs (and a GPU for ``--device gpu``), so the runs on a node
never oversubscribe it, and runs the very ``bench run`` the local executor would, in its
own process, in a temporary directory of the worker. Its record (and its checkpoint, when
the run keeps one) comes back through Ray, and this process writes them into the results
directory with the same atomic writes as a run, naming the paths a local run would have
written: no shared file system is needed. The PTB corpus travels the same way (read once
here, checked by its sha256 again by the run on the worker).

The same outcomes as the local executor: a run's exit status says its status; a run whose
process or worker died (a signal, a node lost) is run once more, then recorded ``lost``
with the reason; Ctrl-C cancels the runs not started and asks each one in flight to stop
(SIGINT: it saves its record as interrupted), and those records still come back.
"""
from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from bench import interrupts
from bench.errors import BenchError
from bench.exits import run_status
from bench.fanout.jobs import STOP_GRACE_SECONDS, Job, Outcome, final_result
from bench.run.records import DEFAULT_RESULTS_DIR, record_bytes, redact_home, write_elsewhere
from bench.storage import atomic_write_bytes, fault_reason

POLL_SECONDS = 1.0  # how often a task asks whether to stop, and the driver looks for finished tasks
ATTEMPTS = 2  # a run whose process or worker dies is run once more
RETURN_GRACE_SECONDS = 60.0  # after the runs' own grace, for their records to come back
CONTROL_SECONDS = 60.0  # for the control actor to answer whether a run may start
CONNECT_SECONDS = 10.0  # for the cluster's address to answer at all
PROBE_SECONDS = 5.0  # for what answers there to answer as a Ray head does (it does at once)
# The client's connection preface of HTTP/2 (gRPC's transport, and so a Ray head's) and an
# empty SETTINGS frame; a server answers with a SETTINGS frame of its own before anything else.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
# A method every Ray head's GCS has; any other gRPC server says it does not know it.
GCS_METHOD = "/ray.rpc.NodeInfoGcsService/GetClusterId"


@dataclass
class _Run:
    """One job as the cluster runs it, and what the driver writes for it."""

    index: int
    label: str
    argv: list[str]  # as the local executor passes them to `bench run`
    threads: int
    gpus: int
    corpus: str | None  # a PTB directory to ship to the worker
    results_dir: Path
    checkpoint_dir: Path
    data_dir: str | None  # as the local run would record it
    attempt: int = 1
    notes: tuple[str, ...] = ()  # what happened to earlier attempts


def _plan(index: int, label: str, argv: list[str]) -> _Run:
    """The resources a run reserves and the paths its files get here; a BenchError (before
    any connection) where a run cannot say what it needs."""
    from bench.config import config_from_args
    from bench.data.ptb import resolve_data_dir
    from bench.fanout.preflight import parse_run_args

    args = parse_run_args(argv)
    config = config_from_args(args)
    if config.threads is None:
        raise BenchError("--executor ray reserves each run's --threads CPUs on a node: pass --threads N")
    if config.device == "auto":
        raise BenchError("--executor ray reserves a GPU only for --device gpu: pass --device cpu or gpu, not auto")
    results_dir = Path(args.results_dir or DEFAULT_RESULTS_DIR)
    checkpoint_dir = Path(args.checkpoint_dir) if args.checkpoint_dir else results_dir / "checkpoints"
    ptb = config.task == "ptb"
    data_dir = args.data_dir or (str(resolve_data_dir(None)) if ptb else None)
    return _Run(index, label, argv, config.threads, int(config.device == "gpu"),
                str(resolve_data_dir(args.data_dir)) if ptb else None, results_dir, checkpoint_dir, data_dir)


class Control:
    """A Ray actor every task asks before it starts its run (never after a stop) and, while
    the run goes, whether to stop it."""

    def __init__(self) -> None:
        self.stop_asked = False
        self.begun: set[int] = set()

    def begin(self, index: int) -> bool:
        if not self.stop_asked:
            self.begun.add(index)
        return not self.stop_asked

    def stopping(self) -> bool:
        return self.stop_asked

    def stop(self) -> set[int]:
        """From now on no run starts; returns the runs that did."""
        self.stop_asked = True
        return self.begun


class RayExecutor:
    """Runs the jobs of :mod:`bench.fanout.jobs` as Ray tasks; see the module's docstring."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        import ray

        self.ray = ray
        self.address = address
        self.num_cpus = num_cpus  # of a local instance (default: every core)
        self.connected = False  # by us: shut down in close()

    def __call__(self, jobs: Sequence[Job]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [job if isinstance(job, Outcome) else None for _, job in jobs]
        runs = [_plan(i, label, job) for i, (label, job) in enumerate(jobs) if not isinstance(job, Outcome)]
        if runs:
            try:
                self._connect()
                self._check_resources(runs)
                interrupts.check()  # our handler only notes a signal: one during ray.init is taken here
            except KeyboardInterrupt:  # before any run started: the summary lists them all as not run
                runs = []
        if runs:
            _ray_messages_to_stderr()
            self._run(runs, outcomes)
        return [o if o is not None else Outcome(jobs[i][0], "not run", 0.0, "interrupted before it started")
                for i, o in enumerate(outcomes)]

    def close(self) -> None:
        if self.connected:
            self.ray.shutdown()
            self.connected = False

    def _connect(self) -> None:
        """Join ``--address``, or start a local instance; Ray's own logging kept off the
        terminal (errors only), and our signal handlers kept (a local instance installs one
        for SIGTERM)."""
        ray = self.ray
        if ray.is_initialized():
            return  # a caller's connection (tests): used, not shut down
        saved = {sig: signal.getsignal(sig) for sig in interrupts.SIGNALS}
        quiet = dict(log_to_driver=False, logging_level=logging.ERROR)
        if self.address:
            _check_reachable(self.address)
        try:
            if self.address:
                ray.init(address=self.address, **quiet)
            else:
                ray.init(num_cpus=self.num_cpus or os.cpu_count(), include_dashboard=False, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BenchError(f"could not start or reach {where}: {first}") from None
        finally:
            for sig, handler in saved.items():
                if handler is not None:
                    signal.signal(sig, handler)
        self.connected = True

    def _check_resources(self, runs: list[_Run]) -> None:
        """Every run fits on some node, else it would wait for ever."""
        nodes = [node.get("Resources", {}) for node in self.ray.nodes() if node.get("Alive")]
        cpus = max((n.get("CPU", 0) for n in nodes), default=0)
        gpus = max((n.get("GPU", 0) for n in nodes), default=0)
        threads = max(run.threads for run in runs)
        if threads > cpus:
            raise BenchError(f"--threads {threads}: no node of the Ray cluster has {threads} CPUs (the largest has "
                             f"{cpus:g}); pass --threads {max(int(cpus), 1)} or add a larger node")
        if any(run.gpus for run in runs) and gpus < 1:
            raise BenchError("--device gpu: no node of the Ray cluster has a GPU")
        total = sum(n.get("CPU", 0) for n in nodes)
        print(f"ray: {len(runs)} run(s) on {len(nodes)} node(s) with {total:g} CPUs, each run reserving its "
              f"--threads; a run's output is shown when it ends", file=sys.stderr, flush=True)

    def _run(self, runs: list[_Run], outcomes: list[Outcome | None]) -> None:
        ray = self.ray
        control = ray.remote(num_cpus=0)(Control).remote()
        task = ray.remote(run_on_worker)
        corpora = {path: ray.put(_read_corpus(path)) for path in {run.corpus for run in runs if run.corpus}}
        pending: dict[Any, _Run] = {}

        def submit(run: _Run) -> None:
            options = dict(num_cpus=run.threads, num_gpus=run.gpus, max_retries=0)
            ref = task.options(**options).remote(run.argv, corpora.get(run.corpus), control, run.index)
            pending[ref] = run

        def collect(timeout: float, retry: bool) -> None:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=timeout)
            for ref in ready:
                with interrupts.deferred():  # a record that came back is written whole
                    run = pending.pop(ref)
                    again = self._finish(run, ref, outcomes, retry)
                    if again is not None:
                        submit(again)

        for run in runs:
            submit(run)
        try:
            while pending:
                interrupts.check()  # between polls: the handler only notes a signal
                collect(POLL_SECONDS, retry=True)
        except KeyboardInterrupt:
            begun = ray.get(control.stop.remote())
            waiting = [ref for ref, run in pending.items() if run.index not in begun]
            for ref in waiting:
                ray.cancel(ref)
            print(f"stopping: {len(pending) - len(waiting)} run(s) in flight save their records; "
                  f"{len(waiting)} not started are cancelled", file=sys.stderr, flush=True)
            deadline = time.monotonic() + STOP_GRACE_SECONDS + RETURN_GRACE_SECONDS
            while pending and time.monotonic() < deadline:
                collect(POLL_SECONDS, retry=False)
            for run in pending.values():
                outcomes[run.index] = Outcome(run.label, "interrupted", 0.0, "its record did not come back in time")
        finally:
            ray.kill(control)

    def _finish(self, run: _Run, ref: Any, outcomes: list[Outcome | None], retry: bool) -> _Run | None:
        """Write what came back and set the run's outcome; or, for a run whose process or
        worker died, the run to submit once more."""
        from ray.exceptions import RayError, TaskCancelledError

        try:
            result = self.ray.get(ref)
        except TaskCancelledError:
            outcomes[run.index] = Outcome(run.label, "not run", 0.0, "interrupted before it started")
            return None
        except RayError as exc:
            return self._died(run, f"its Ray worker failed ({_one_line(exc)})", None, outcomes, retry)
        if not result["started"]:
            outcomes[run.index] = Outcome(run.label, "not run", 0.0, "interrupted before it started")
            return None
        code = result["returncode"]
        where = f"on {result['host']}" + (f", attempt {run.attempt}" if run.attempt > 1 else "")
        print(f"== {run.label}: -m bench run {' '.join(run.argv)} ({where}, {result['seconds']:.1f} s)",
              file=sys.stderr, flush=True)
        result["lines"] = [self._here(run, line, result["root"]) for line in result["lines"]]
        for line in result["lines"]:
            print(f"   {line}", file=sys.stderr, flush=True)
        if code < 0 and not result["stopped"]:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
            return self._died(run, f"its process was killed by {name} {where}", result, outcomes, retry)
        status = run_status(code)  # a run we stopped that was killed past its grace: lost
        detail = result["lines"][-1] if result["lines"] and code else ""
        # the run ended as it says, wherever its record could be written: this only adds where it is
        detail = "; ".join(part for part in (*run.notes, detail, self._write(run, result)) if part)
        outcomes[run.index] = Outcome(run.label, status, result["seconds"], detail, final_result(result["lines"]))
        return None

    @staticmethod
    def _here(run: _Run, line: str, root: str) -> str:
        """A line of the run's output with the worker's temporary paths as this machine's."""
        for there, here in (("results", run.results_dir), ("checkpoints", run.checkpoint_dir), ("ptb", run.data_dir)):
            line = line.replace(f"{root}/{there}", str(here))
        return line

    def _died(self, run: _Run, reason: str, result: dict[str, Any] | None, outcomes: list[Outcome | None],
              retry: bool) -> _Run | None:
        if retry and run.attempt < ATTEMPTS:
            print(f"== {run.label}: {reason}; running it again", file=sys.stderr, flush=True)
            return _Run(**{**run.__dict__, "attempt": run.attempt + 1, "notes": (*run.notes, f"retried: {reason}")})
        written = self._write(run, result) if result is not None else ""  # what it saved before it died
        notes = [*run.notes, reason] if retry else [*run.notes, reason, "not retried: stopping"]
        notes += [written] if written else []
        seconds = result["seconds"] if result else 0.0
        outcomes[run.index] = Outcome(run.label, "lost", seconds, "; ".join(notes))
        return None

    def _write(self, run: _Run, result: dict[str, Any]) -> str:
        """The record (and checkpoint) that came back, at the paths a local run would have
        used, naming them as a local run would. What cannot be written there is written
        elsewhere (:func:`bench.run.records.write_elsewhere`; the record then names its checkpoint
        where it is): the run's work is never dropped. Returns what was not written where
        asked and where it is instead, said on stderr too ("" when all was)."""
        if result["record"] is None:
            return ""
        record = json.loads(result["record"])
        command = redact_home(["python", "-m", "bench", "run", *run.argv])
        record["command"] = command
        record["data_dir"] = run.data_dir
        notes = []
        checkpoint = None
        if result["checkpoint"] is not None:
            data = _checkpoint_here(result["checkpoint"], command, run.results_dir, run.data_dir)
            checkpoint, note = _save(run.checkpoint_dir / f"{record['run_id']}.npz", data, "its checkpoint")
            notes.append(note)
        if record.get("checkpoint"):  # a killed run's record names none, as a local one's
            record["checkpoint"] = str(checkpoint) if checkpoint is not None else None
        notes.append(_save(run.results_dir / f"{record['run_id']}.json", record_bytes(record), "its record")[1])
        said = "; ".join(note for note in notes if note)
        if said:
            print(f"== {run.label}: {said}", file=sys.stderr, flush=True)
        return said


def _check_reachable(address: str) -> None:
    """A Ray head answers where Ray will connect for ``address``: Ray itself retries for many
    minutes, printing its warnings, an address where nothing listens or where something that
    is not Ray does (it accepts the connection, then never answers Ray's protocol), so both
    are refused here within seconds. Probed where Ray connects, not where the flag says:
    Ray turns 127.0.0.1 and localhost into this node's address."""
    if address.startswith("ray://"):
        hostport = given = address[len("ray://"):]
    else:
        given = address
        try:  # where Ray itself connects: for auto $RAY_ADDRESS, else the cluster `ray start` left on this node
            from ray._private.services import canonicalize_bootstrap_address

            hostport = canonicalize_bootstrap_address(address)
        except Exception:
            if address == "auto":
                return  # Ray says what it cannot find
            hostport = address  # a private function of Ray's that changed: probe the address as given
        if hostport is None:
            raise BenchError("--address auto: no Ray cluster on this node (`ray start --head` makes one)")
    via = "" if hostport == given else f", where Ray connects for {given}"
    host, _, port = hostport.rpartition(":")
    try:
        connection = socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS)
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise BenchError(f"--address {address}: nothing answers at {hostport} ({why}){via}; "
                         "is `ray start --head` running there?") from None
    with connection:
        why = None if _tls() else _not_http2(connection)
    if why is None and not _tls() and not address.startswith("ray://"):  # Ray Client's server is no GCS
        why = _not_ray_gcs(hostport)
    if why is not None:
        where = f"{hostport}{via}," if via else hostport
        raise BenchError(f"--address {address}: what listens at {where} is not a Ray head ({why}); "
                         "pass the address `ray start --head` printed")


def _tls() -> bool:
    """Ray's own switch for TLS between its processes: then the head first wants a TLS
    handshake, and the plain probes below do not apply."""
    return os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true")


def _not_http2(connection: socket.socket) -> str | None:
    """Why the server at ``connection`` is not one that speaks HTTP/2, as a Ray head does
    (gRPC), or None: such a server answers a client's preface with a SETTINGS frame."""
    deadline = time.monotonic() + PROBE_SECONDS
    reply = b""
    try:
        connection.sendall(HTTP2_PREFACE)
        while len(reply) < 9:
            connection.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = connection.recv(9 - len(reply))
            if not chunk:
                break
            reply += chunk
    except socket.timeout:
        return f"it accepted the connection, then said nothing within {PROBE_SECONDS:g} s" if not reply else (
            f"it answered {reply!r} and then nothing")
    except OSError as exc:
        return f"the connection failed: {exc.strerror or exc}"
    if not reply:
        return "it closed the connection without an answer"
    if len(reply) < 9 or reply[3] != 0x04 or reply[5:9] != bytes(4):
        return f"it answered {reply!r}, not as a gRPC server does"
    return None


def _not_ray_gcs(hostport: str) -> str | None:
    """Why the gRPC server at ``hostport`` is not a Ray head, or None: a head's GCS answers
    :data:`GCS_METHOD`. Without grpcio (Ray's default extra has it) only HTTP/2 was checked."""
    try:
        import grpc
    except ImportError:
        return None
    channel = grpc.insecure_channel(hostport, options=[("grpc.enable_http_proxy", 0)])  # as Ray's own channels
    try:
        channel.unary_unary(GCS_METHOD)(b"", timeout=PROBE_SECONDS)
    except grpc.RpcError as exc:
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return f"a gRPC server, but one that does not know Ray's {GCS_METHOD}"
        if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
            return f"no answer to Ray's {GCS_METHOD} within {PROBE_SECONDS:g} s ({code.name})"
        return None  # a Ray head that answered as it does to such a call (it wants a token, say)
    finally:
        channel.close()
    return None


def _ray_messages_to_stderr() -> None:
    """Ray prints what its raylets tell the driver (a worker that died, a node short of
    memory) on stdout, whatever ``log_to_driver`` says (``ray._private.worker.
    listen_error_messages``), and stdout holds the summary: those lines go to stderr, beside
    the runs' own lines. Installed once per process; a Ray without that function is left be."""
    worker = sys.modules.get("ray._private.worker")
    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "to_stderr", False):
        return

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        original({**data, "is_err": True}, ignore_prefix)

    to_stderr.to_stderr = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = to_stderr


def _save(path: Path, data: bytes, what: str) -> tuple[Path | None, str]:
    """``data`` written at ``path`` (its directory made if missing), else elsewhere; returns
    where it is (None: nowhere) and, when not at ``path``, what to say of it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
        return path, ""
    except (OSError, BenchError) as exc:
        why = (exc.strerror or fault_reason(exc)) if isinstance(exc, OSError) else str(exc)
    where, why_not = write_elsewhere(path.name, data)
    if where is None:
        return None, f"{what} could not be written to {path} ({why}), nor elsewhere ({why_not}): it is lost"
    return where, f"{what} could not be written to {path} ({why}); it is at {where} instead"


def _checkpoint_here(data: bytes, command: list[str], results_dir: Path, data_dir: str | None) -> bytes:
    """The checkpoint as the run wrote it, its paths made this machine's, so that
    ``--resume`` here updates the record here."""
    import numpy as np

    from bench.run.checkpoints import META_KEY, checkpoint_bytes

    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        meta = json.loads(str(archive[META_KEY][()]))
        arrays = {name: archive[name] for name in archive.files if name != META_KEY}
    meta.pop("checkpoint_version", None)
    meta.update(command=command, results_dir=str(results_dir.resolve()), data_dir=data_dir)
    return checkpoint_bytes(arrays, meta)


def _read_corpus(directory: str) -> dict[str, bytes]:
    from bench.data.ptb import SPLITS, file_name

    return {file_name(split): (Path(directory) / file_name(split)).read_bytes() for split in SPLITS}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


# -- on the worker ---------------------------------------------------------------------


def run_on_worker(argv: list[str], corpus: dict[str, bytes] | None, control: Any, index: int) -> dict[str, Any]:
    """``bench run`` with ``argv`` in a temporary directory of this worker (its results,
    checkpoints and corpus there); returns its exit status, output, record and checkpoint."""
    with tempfile.TemporaryDirectory(prefix="cellbench-ray-") as tmp:
        root = Path(tmp)
        where = ["--results-dir", str(root / "results"), "--checkpoint-dir", str(root / "checkpoints")]
        if corpus is not None:
            (root / "ptb").mkdir()
            for name, data in corpus.items():
                (root / "ptb" / name).write_bytes(data)
            where += ["--data-dir", str(root / "ptb")]
        if not control.begin.remote(index).future().result(timeout=CONTROL_SECONDS):  # not ray.get: see _wait
            return {"started": False}
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "bench", "run", *argv, *where], cwd=tmp, text=True,
                                 errors="replace", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, preexec_fn=_end_with_parent)
        lines: list[str] = []
        reader = threading.Thread(target=_read_lines, args=(child.stdout, lines), daemon=True)
        reader.start()
        try:
            stopped = _wait(child, control)
        finally:
            if child.poll() is None:  # this task itself was interrupted: the run saves what it did
                child.send_signal(signal.SIGINT)
                try:
                    child.wait(timeout=STOP_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    child.kill()
        reader.join(timeout=10)
        seconds = time.perf_counter() - start
        record = _only_record(root / "results")
        checkpoint = None  # whatever the run left: kept (--keep-checkpoint, stopped, killed) or none
        if record is not None:
            path = root / "checkpoints" / f"{json.loads(record)['run_id']}.npz"
            checkpoint = path.read_bytes() if path.is_file() else None
        return {"started": True, "returncode": child.returncode, "lines": lines, "record": record, "root": tmp,
                "checkpoint": checkpoint, "host": socket.gethostname(), "seconds": seconds, "stopped": stopped}


def _wait(child: subprocess.Popen, control: Any) -> bool:
    """Until the run ends; when the driver stops, the run gets SIGINT (it saves its record
    as interrupted) and, past the grace, SIGKILL. Returns whether it was stopped. The
    control actor is asked through futures, never ray.get: a task blocked in ray.get lends
    its CPUs back to Ray, which would start another run on them."""
    stopped_at = None
    asked = control.stopping.remote().future()
    while True:
        try:
            child.wait(timeout=POLL_SECONDS)
            return stopped_at is not None
        except subprocess.TimeoutExpired:
            pass
        if stopped_at is None and asked.done():
            if asked.exception() is None and asked.result():
                child.send_signal(signal.SIGINT)
                stopped_at = time.monotonic()
            else:
                asked = control.stopping.remote().future()
        elif stopped_at is not None and time.monotonic() - stopped_at > STOP_GRACE_SECONDS:
            child.kill()


def _read_lines(stream: Any, lines: list[str]) -> None:
    for line in stream:
        if line.strip():
            lines.append(line.rstrip("\n"))


def _only_record(directory: Path) -> bytes | None:
    records = sorted(p for p in directory.glob("*.json") if not p.name.startswith(".")) if directory.is_dir() else []
    return records[0].read_bytes() if records else None


def _end_with_parent() -> None:
    """In the child before it runs: SIGINT and the rest unblocked (a Ray worker blocks
    SIGINT, and a child inherits the mask, so the run could not be stopped), and killed
    when the worker that started it dies (Linux), rather than training on with nobody to
    hand its record to."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, interrupts.SIGNALS)
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # resolved here: the child only calls it
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()
