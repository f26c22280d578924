"""Shared test settings: never touch the Hugging Face Hub; a fresh Accelerate state per test."""

import os

import pytest
from accelerate.state import AcceleratorState, GradientState

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Accelerate keeps process-wide singleton state; tests with other settings need it reset."""
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
