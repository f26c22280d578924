"""Fixtures of the robust fine-tuning tests."""

import pytest

from hf_counterfactual.models.clip_zero_shot import ClipZeroShotClassifier
from hf_counterfactual.robust import ClipImageClassifier
from tests.robust.tiny_clip import NAMES, one_thread, tiny_clip  # noqa: F401 (one_thread: a fixture)


@pytest.fixture
def clip_pair(tiny_clip_tokenizer):
    """(ClipZeroShotClassifier, ClipImageClassifier.from_zero_shot of it) on the same tiny CLIP."""
    zero_shot = ClipZeroShotClassifier.from_clip(tiny_clip(), tiny_clip_tokenizer, NAMES)
    return zero_shot, ClipImageClassifier.from_zero_shot(zero_shot)
