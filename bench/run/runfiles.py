"""The files of one run, written so that no fault costs what is done: the record (every
completed epoch) before the checkpoint, a hidden space reserve beside the record that is
given back when the disk fills so the final state can still be written, and a lock held
while the run writes, so that two processes never interleave one run's epochs.

Two promises beyond the writes themselves:

- A record never moves backwards. A resume finds the record already at its name (its own
  from before, or one a later resume wrote); one that holds more epochs than the checkpoint
  is refused before anything trains, and otherwise the record there is replaced only by one
  with more epochs, or as many and no less finished (a completed record by a completed one).
- A record that cannot be written where it belongs is written elsewhere
  (:func:`bench.run.records.write_elsewhere`), and the run's last line says where, or that it is
  nowhere and what on disk still holds its epochs.

A completed run deletes its checkpoint (unless kept) only if this process wrote it: a resume
that trained no epoch leaves the checkpoint it read, and its record names it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.run.checkpoints import read_checkpoint, save_checkpoint
from bench.errors import BenchError
from bench.run.records import NOT_WHERE_ASKED, record_bytes, write_elsewhere
from bench.run.resume import RunPlace
from bench.storage import RunLock, SpaceReserve, atomic_write_bytes, fault_reason, open_regular, writing

def _rank(epochs: int, status: str | None) -> tuple[int, bool]:
    """How far a record got: its epochs, then whether it completed."""
    return epochs, status == "completed"


class RunFiles:
    """The record and the checkpoint of one run, written so that a full disk costs nothing
    already done: the record first (every completed epoch), then the checkpoint; a hidden
    reserve beside the record is given back when the disk is full, to write its final state."""

    def __init__(self, record_path: Path, checkpoint_path: Path, record: dict[str, Any], place: RunPlace) -> None:
        self.record_path, self.checkpoint_path, self.record, self.place = record_path, checkpoint_path, record, place
        self.reserve: SpaceReserve | None = None
        self.lock: RunLock | None = None
        # How the run ended, set by the runner when that is said together with what became of
        # the record (an abort: "the record keeps N epochs" is only known once it is written).
        self.ending: str | None = None
        self._found: dict[str, Any] | None = None  # the record at record_path when the run began
        self._on_disk: int | None = None  # epochs of the record at record_path, as far as this process knows
        self._wrote_checkpoint = False
        self._checkpoint_epochs: int | None = None  # epochs of the checkpoint at checkpoint_path

    def claim(self, resumed_from: Path | None = None) -> None:
        """Take the run lock, then look at what already holds the run's names: a BenchError
        (the lock given back, nothing written) for a record of this run with more epochs than
        the run starts from (unless it names ``resumed_from``, the checkpoint resumed: its
        checkpoint's write failed, and the run redoes those epochs), for anything at the
        record's name that is not this run's record, and for a checkpoint there that belongs
        to another record or holds more epochs."""
        self.lock = RunLock(self.record_path.parent, self.record["run_id"],
                            guards=(self.record_path, self.checkpoint_path))
        try:
            self._found = self._read_found_record(resumed_from)
            self._check_found_checkpoint()
        except BaseException:
            self.lock.release()
            self.lock = None
            raise

    def _read_found_record(self, resumed_from: Path | None) -> dict[str, Any] | None:
        path, run_id, starts = self.record_path, self.record["run_id"], len(self.record["epochs"])
        elsewhere = f"pass --results-dir DIR to continue from epoch {starts} in a new record there"
        try:
            with open_regular(path) as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BenchError(f"{path} cannot be read ({exc.strerror or exc}) and the run would replace it: "
                             f"move it away, or {elsewhere}") from None
        try:
            found = json.loads(data)
        except ValueError:
            found = None
        if not (isinstance(found, dict) and found.get("run_id") == run_id and isinstance(found.get("epochs"), list)):
            raise BenchError(f"{path} is not a record of run {run_id}, and the run would replace it: move it away, "
                             f"or {elsewhere}")
        have, status, named = len(found["epochs"]), found.get("status"), found.get("checkpoint")
        named = Path(named) if isinstance(named, str) and Path(named).is_file() else None
        if have > starts and not (named is not None and resumed_from is not None and named.samefile(resumed_from)):
            own = f"resume from the checkpoint it names ({named}), or " if named is not None else ""
            raise BenchError(f"{path} already holds {have} epoch(s) of run {run_id} ({status}) and the checkpoint "
                             f"only {starts}: resuming from it would take that record back; {own}{elsewhere}")
        self._on_disk = have
        return {"epochs": have, "status": status}

    def _check_found_checkpoint(self) -> None:
        path, starts = self.checkpoint_path, len(self.record["epochs"])
        if not path.exists():
            return
        try:
            meta = read_checkpoint(path).meta
        except BenchError as exc:
            raise BenchError(f"{exc}; the run would replace it: move it away or pass --checkpoint-dir DIR") from None
        self._checkpoint_epochs = len(meta["history"])
        if self.record["config"]["epochs"] <= starts:
            return  # nothing to train: it will not be written
        owner = meta.get("results_dir")
        if meta["run_id"] != self.record["run_id"] or (
                owner is not None and Path(owner).resolve() != self.record_path.parent.resolve()):
            raise BenchError(f"{path} is the checkpoint of the record in {owner}, which this run's checkpoints "
                             "would replace: pass --checkpoint-dir DIR")
        if self._checkpoint_epochs > starts:
            raise BenchError(f"{path} already holds {self._checkpoint_epochs} epoch(s) of run {meta['run_id']}, the "
                             f"checkpoint resumed from {starts}: resume from {path}, or pass --checkpoint-dir DIR")

    def _behind(self) -> bool:
        """Whether the record as it is now got less far than the one found at its name."""
        found = self._found
        return found is not None and (_rank(len(self.record["epochs"]), self.record["status"])
                                      < _rank(found["epochs"], found["status"]))

    def start(self) -> None:
        writing("the space reserve", self.record_path.parent, lambda: setattr(self, "reserve", SpaceReserve(
            self.record_path.parent, self.record["run_id"])))
        self.write_record()

    def write_record(self) -> None:
        if self._behind():  # the record found stays until this run has got as far
            return
        data = record_bytes(self.record)
        writing("the record", self.record_path, lambda: atomic_write_bytes(self.record_path, data))
        self._on_disk = len(self.record["epochs"])
        if self.reserve is not None:  # failing to grow it is the early warning of a full disk
            writing("the space reserve", self.reserve.path, lambda: self.reserve.ensure(2 * len(data)))

    def write_checkpoint(self, arrays: dict[str, np.ndarray]) -> None:
        r = self.record
        meta = {"run_id": r["run_id"], "config": r["config"], "started_at": r["started_at"], "history": r["epochs"],
                "gradient_norms": r["gradient_norms"], "resumed": r.get("resumed", []), "tag": r["tag"],
                "preset": r.get("preset"), "command": r["command"], "environment": r["environment"],
                "results_dir": str(self.record_path.parent.resolve()), "data_dir": self.place.data_dir}
        writing("the checkpoint", self.checkpoint_path, lambda: save_checkpoint(self.checkpoint_path, arrays, meta))
        self._wrote_checkpoint, self._checkpoint_epochs = True, len(r["epochs"])

    def finish(self, keep_checkpoint: bool) -> str | None:
        """The record's last write (its final status); returns the line to show, if any: the
        runner's :attr:`ending` completed by what became of the record, or where the record
        is when not where it belongs, or that the record found was left as it was. A
        completed run's checkpoint is deleted once the record says so, unless it is to be kept
        (--keep-checkpoint, to extend the run later with more --epochs) or this process did
        not write it (a resume that trained nothing: the checkpoint it read is another's too)."""
        record, epochs = self.record, len(self.record["epochs"])
        exists = self.checkpoint_path.exists()
        drop = record["status"] == "completed" and not keep_checkpoint and self._wrote_checkpoint and exists
        record["checkpoint"] = str(self.checkpoint_path) if exists and not drop else None
        head = self.ending or f"run {record['run_id']} {record['status']}"
        try:
            if self._behind():
                found = self._found
                return (f"{head}; its record {self.record_path} still says {found['status']} after {found['epochs']} "
                        "epoch(s), which this run did not go past: left as it was")
            problem = self._write_final()
            if problem is None:
                if drop:
                    _unlink_quietly(self.checkpoint_path)
                return f"{head}; the record keeps the {epochs} completed epoch(s)" if self.ending else None
        finally:
            if self.reserve is not None:
                self.reserve.release()
            if self.lock is not None:
                self.lock.release()
        # Not where it belongs: the checkpoint stays (a record there may still name it), and so
        # does the record's pointer to it.
        record["checkpoint"] = str(self.checkpoint_path) if exists else None
        where, why_not = write_elsewhere(self.record_path.name, record_bytes(record))
        told = f"{head}{NOT_WHERE_ASKED}{self.record_path} ({problem})"
        if where is not None:
            return f"{told}; it is at {where} instead, with its {epochs} completed epoch(s)"
        kept = (f"{self.record_path} holds it as of {self._on_disk} completed epoch(s)" if self._on_disk is not None
                else "no record of it exists")
        if exists and self._checkpoint_epochs is not None:
            kept += f"; the checkpoint {self.checkpoint_path} holds {self._checkpoint_epochs} epoch(s)"
        return f"{told}, nor elsewhere ({why_not}): {kept}"

    def _write_final(self) -> str | None:
        """Write the final record at its name, giving back the reserve for room if it must;
        None, or why it could not be written there (one clause)."""
        data = record_bytes(self.record)
        try:
            try:
                atomic_write_bytes(self.record_path, data)
            except OSError:
                if self.reserve is None:
                    raise
                self.reserve.release()  # room for the record, which is what matters now
                atomic_write_bytes(self.record_path, data)
        except OSError as exc:
            return exc.strerror or fault_reason(exc)
        except BenchError as exc:  # a link put at its name meanwhile
            return str(exc)
        self._on_disk = len(self.record["epochs"])
        return None


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
