"""Shared test settings: never touch the Hugging Face Hub."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
