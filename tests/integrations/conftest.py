"""The trainers' tests run offline: nothing may reach for the Hugging Face Hub (no
downloads, no telemetry); every model and tokenizer is built here from a config."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
