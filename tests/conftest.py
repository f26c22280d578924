"""Shared test settings: never touch the Hugging Face Hub; a fresh Accelerate state per test."""

import os

# The suite runs on the CPU, also on a GPU machine (the GPU paths run in benchmarks/gpu): it compares
# against CPU hand computations, and its 2-process tests fork, which fails in the children ("CUDA error:
# initialization error") once an earlier test has initialised CUDA. So CUDA stays hidden, set before
# torch is imported.
os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402

import pytest  # noqa: E402
from accelerate.state import AcceleratorState, GradientState  # noqa: E402


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
