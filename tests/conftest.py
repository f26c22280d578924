"""Shared test settings: never touch the Hugging Face Hub; a fresh Accelerate state per test."""

import json
import os

import pytest
from accelerate.state import AcceleratorState, GradientState

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# the tests compare against CPU hand computations and start gloo process groups: on a GPU machine they
# stay on the CPU too (the GPU paths run in benchmarks/gpu)
os.environ.setdefault("ACCELERATE_USE_CPU", "true")


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Accelerate keeps process-wide singleton state; tests with other settings need it reset."""
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture
def tiny_clip_tokenizer(tmp_path):
    """A CLIPTokenizer over single letters (vocab 57: specials, "!", letters, letters + "</w>"), offline."""
    from transformers import CLIPTokenizer

    chars = "abcdefghijklmnopqrstuvwxyz"
    tokens = ["<|startoftext|>", "<|endoftext|>", "!", *chars, *(c + "</w>" for c in chars)]
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"), model_max_length=77)
