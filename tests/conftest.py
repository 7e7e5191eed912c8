"""shared test fixtures: where the parity corpus lives, and hypothesis settings sized for 2-core CI"""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PATTERN_LENS_SHARED", REPO.parent / "shared"))
"the project's shared/ folder beside the checkout; PATTERN_LENS_SHARED names another (e.g. from a git worktree)"
PARITY = SHARED / "parity" / "pythia-14m"

settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    """the reference's pythia-14m renders, read in place; skips (with the reason) where absent"""
    if not PARITY.is_dir():
        pytest.skip(f"parity corpus not found at {PARITY} (../shared is absent in this checkout)")
    return PARITY
