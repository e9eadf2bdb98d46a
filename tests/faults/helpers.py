"""What the fault tests share: running the CLI in-process, and finding what a run left."""
from __future__ import annotations

import json
from pathlib import Path

from bench.cli import main


def cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    """``python -m bench ARGV`` in this process: (exit code, stdout, stderr)."""
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def records_in(directory: Path) -> list[dict]:
    """Every run record directly in ``directory`` (none if it does not exist)."""
    return [json.loads(p.read_text()) for p in sorted(Path(directory).glob("*.json"))] if Path(directory).is_dir() else []


def leftovers(directory: Path) -> list[str]:
    """Hidden temporary, reserve or lock files anywhere below ``directory``."""
    return sorted(str(p) for p in Path(directory).rglob(".*") if p.suffix in (".tmp", ".reserve", ".lock"))
