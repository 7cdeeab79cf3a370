"""The service's four models, by what they do (API.md §1)."""

from __future__ import annotations

DETECT_MODELS = ("emo-detect-v1", "emoji-detect-v1")
SYNTHESIS_MODELS = ("emo-v1", "emoji-v1")
