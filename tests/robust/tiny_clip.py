"""Tiny CLIP models for the robust fine-tuning tests: random weights, eager attention, built offline."""

import pytest
import torch
from transformers import CLIPConfig, CLIPModel

NAMES = ["cat", "dog", "bird"]


def tiny_clip(seed: int = 0, image_size: int = 16, patch_size: int = 4) -> CLIPModel:
    """A CLIP over the conftest tokenizer's 57 tokens (2 vision blocks); 16 px images give a 4 x 4 patch grid."""
    torch.manual_seed(seed)
    text = dict(vocab_size=57, hidden_size=16, intermediate_size=20, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)  # fmt: skip
    vision = dict(hidden_size=16, intermediate_size=20, num_hidden_layers=2, num_attention_heads=2,
                  image_size=image_size, patch_size=patch_size)  # fmt: skip
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=8, attn_implementation="eager")
    return CLIPModel(config).eval()


@pytest.fixture
def one_thread():
    """One intra-op thread: for models this small, two threads on a busy 2-core machine run 20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
