"""The files of one run, written so that no fault costs what is done: the record (every
completed epoch) before the checkpoint, a hidden space reserve beside the record that is
given back when the disk fills so the final state can still be written, and a lock held
while the run writes, so that two processes never interleave one run's epochs."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.checkpoints import save_checkpoint
from bench.records import record_bytes
from bench.resume import RunPlace
from bench.storage import RunLock, SpaceReserve, atomic_write_bytes, fault_reason, writing


class RunFiles:
    """The record and the checkpoint of one run, written so that a full disk costs nothing
    already done: the record first (every completed epoch), then the checkpoint; a hidden
    reserve beside the record is given back when the disk is full, to write its final state."""

    def __init__(self, record_path: Path, checkpoint_path: Path, record: dict[str, Any], place: RunPlace) -> None:
        self.record_path, self.checkpoint_path, self.record, self.place = record_path, checkpoint_path, record, place
        self.reserve: SpaceReserve | None = None
        self.lock: RunLock | None = None

    def start(self) -> None:
        writing("the space reserve", self.record_path.parent, lambda: setattr(self, "reserve", SpaceReserve(
            self.record_path.parent, self.record["run_id"])))
        self.write_record()

    def write_record(self) -> None:
        data = record_bytes(self.record)
        writing("the record", self.record_path, lambda: atomic_write_bytes(self.record_path, data))
        if self.reserve is not None:  # failing to grow it is the early warning of a full disk
            writing("the space reserve", self.reserve.path, lambda: self.reserve.ensure(2 * len(data)))

    def write_checkpoint(self, arrays: dict[str, np.ndarray]) -> None:
        r = self.record
        meta = {"run_id": r["run_id"], "config": r["config"], "started_at": r["started_at"], "history": r["epochs"],
                "gradient_norms": r["gradient_norms"], "resumed": r.get("resumed", []), "tag": r["tag"],
                "preset": r.get("preset"), "command": r["command"], "environment": r["environment"],
                "results_dir": str(self.record_path.parent.resolve()), "data_dir": self.place.data_dir}
        writing("the checkpoint", self.checkpoint_path, lambda: save_checkpoint(self.checkpoint_path, arrays, meta))

    def finish(self, keep_checkpoint: bool) -> str | None:
        """The record's last write (its final status); returns a one-line problem, if any.
        A completed run's checkpoint is deleted once the record says so, unless it is to be
        kept (--keep-checkpoint, to extend the run later with more --epochs)."""
        drop = self.record["status"] == "completed" and not keep_checkpoint and self.checkpoint_path.exists()
        self.record["checkpoint"] = str(self.checkpoint_path) if self.checkpoint_path.exists() and not drop else None
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
            return (f"{fault_reason(exc)}: the final record could not be written to {self.record_path} "
                    f"({exc.strerror or exc}); it holds the state after the last completed epoch")
        finally:
            if self.reserve is not None:
                self.reserve.release()
            if self.lock is not None:
                self.lock.release()
        if drop:
            try:
                self.checkpoint_path.unlink()
            except OSError:
                pass
        return None
