"""Shared fixtures: the PTB copy (found from the repository root, not the working directory)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PTB_DIR = REPO_ROOT.parent / "shared" / "data" / "ptb"


@pytest.fixture(scope="session")
def ptb_dir() -> Path:
    """The shared PTB copy. Absent: skip with the reason, except under CI=true, where a
    missing corpus would silently hide every PTB test, so it fails."""
    if not (PTB_DIR / "ptb.train.txt").is_file():
        message = f"PTB corpus not found at {PTB_DIR} (the shared copy beside the repository)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI=true requires it")
        pytest.skip(message)
    return PTB_DIR


@pytest.fixture(scope="session")
def ptb_corpus(ptb_dir):
    from bench.data import load_ptb

    return load_ptb(ptb_dir)
