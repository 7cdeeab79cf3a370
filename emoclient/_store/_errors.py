"""The account store's errors, part of emoclient's one tree under ``EmoError``."""

from __future__ import annotations

from emoclient._exceptions import EmoError

__all__ = ["StoreError", "StoreUnavailableError"]


class StoreError(EmoError):
    """The account store failed: a file that cannot be used, a closed store, a refused login."""


class StoreUnavailableError(StoreError):
    """The shared store stayed unreachable past its deadline; nothing was granted meanwhile."""
