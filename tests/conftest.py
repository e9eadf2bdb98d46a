"""Shared fixtures: the PTB copy (``$BENCH_DATA_DIR``, else the shared copy beside the
repository; found from the repository root, not the working directory), and the conformance
checks a plugin's own tests run in the same session (so that our grid runs none twice)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.kit_elsewhere import KitElsewhere

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_PTB_DIR = REPO_ROOT.parent / "shared" / "data" / "ptb"


def ptb_location() -> tuple[Path, str]:
    """Where the tests look for the corpus, and how that was chosen: ``$BENCH_DATA_DIR``
    (where `bench run` looks too) wins, so a clone anywhere can point the tests at its copy."""
    if os.environ.get("BENCH_DATA_DIR"):
        return Path(os.environ["BENCH_DATA_DIR"]).expanduser(), "$BENCH_DATA_DIR"
    return SHARED_PTB_DIR, "the shared copy beside the repository; set BENCH_DATA_DIR to use another"


@pytest.fixture(scope="session")
def ptb_dir() -> Path:
    """The PTB copy. Absent: skip with the reason, except under CI=true, where a missing
    corpus would silently hide every PTB test, so it fails."""
    directory, chosen = ptb_location()
    if not (directory / "ptb.train.txt").is_file():
        message = f"PTB corpus not found at {directory} ({chosen})"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI=true requires it")
        pytest.skip(message)
    return directory


@pytest.fixture(scope="session")
def ptb_corpus(ptb_dir):
    from bench.data import load_ptb

    return load_ptb(ptb_dir)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Records a full disk could not take are rescued under $XDG_CACHE_HOME/cellbench/unwritten:
    the tests' go to a temporary cache, never the user's (children inherit the variable)."""
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.fixture(scope="session")
def kit_elsewhere(request) -> KitElsewhere:
    """What a plugin's own tests check in this session; our grid skips those cases, saying
    where they run (the full grid runs them when the plugin's tests are not collected)."""
    return KitElsewhere(request.session.items)
