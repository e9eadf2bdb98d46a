"""Ten runs at once into one results directory (as `tox -p` does): nothing collides."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.report.build import load_records


def test_ten_concurrent_runs_write_ten_valid_records(tmp_path):
    command = [sys.executable, "-m", "bench", "run", "--epochs", "1", "--total-series-length", "1500",
               "--results-dir", str(tmp_path), "--quiet"]
    processes = [subprocess.Popen(command + ["--seed", str(i % 2)], stderr=subprocess.PIPE, text=True) for i in range(10)]
    errors = [p.communicate(timeout=300)[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * 10, errors
    records, bad = load_records(tmp_path)
    assert len(records) == 10 and not bad
    assert len({r["run_id"] for r in records}) == 10
    assert all(r["status"] == "completed" for r in records)
    leftovers = [p.name for p in tmp_path.rglob("*") if p.is_file() and (p.name.startswith(".") or p.suffix == ".tmp")]
    assert leftovers == []
    assert list((tmp_path / "checkpoints").glob("*.npz")) == []  # completed runs do not keep theirs


def test_record_has_no_home_paths(tmp_path, monkeypatch):
    from bench.config import make_config
    from bench.run.runner import RunOptions, run

    home = Path.home()
    argv = ["python", "-m", "bench", "run", "--results-dir", str(home / "somewhere")]
    result = run(make_config("echo", epochs=1, total_series_length=1500),
                 RunOptions(results_dir=str(tmp_path), quiet=True, argv=argv))
    text = result.record_path.read_text()
    assert str(home) + "/" not in text
    assert "~/somewhere" in json.loads(text)["command"]


def test_results_are_created_with_the_users_default_permissions(tmp_path):
    import os
    import stat

    from bench.config import make_config
    from bench.run.runner import RunOptions, run

    old = os.umask(0o027)
    try:
        result = run(make_config("echo", epochs=1, total_series_length=1500),
                     RunOptions(results_dir=str(tmp_path / "new" / "results"), quiet=True))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new" / "results").stat().st_mode) == 0o750
    assert stat.S_IMODE(result.record_path.stat().st_mode) == 0o640
