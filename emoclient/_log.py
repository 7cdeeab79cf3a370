"""The library's logger, and ``EMOCLIENT_LOG`` (``debug`` or ``info``) for a stderr handler.

Everything logs through ``logging.getLogger("emoclient")``: retries and resumes at INFO,
give-ups at WARNING, every request and answer at DEBUG. No line carries the API key or a
signed URL's query string.
"""

from __future__ import annotations

import logging
import os

__all__ = ["LOG_VARIABLE", "log_to_stderr", "logger", "switch_on_from_env"]

LOG_VARIABLE = "EMOCLIENT_LOG"
logger = logging.getLogger("emoclient")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}


class _EnvHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The stderr handler ``EMOCLIENT_LOG`` adds (a class of its own: added only once)."""


def switch_on_from_env() -> None:
    """Log to stderr at the level ``EMOCLIENT_LOG`` names; other values leave logging alone.

    Called when a client is made, not at import, so that ``import emoclient`` stays light.
    """
    level = _LEVELS.get(os.environ.get(LOG_VARIABLE, "").strip().lower())
    if level is None or any(isinstance(h, _EnvHandler) for h in logger.handlers):
        return
    log_to_stderr(level)


def log_to_stderr(level: int) -> logging.Handler:
    """Log at ``level`` (and above) to stderr, as ``EMOCLIENT_LOG`` does (``emoclient -v``).

    One handler however often it is called (a later call sets the level); returns it.
    """
    handler = next((h for h in logger.handlers if isinstance(h, _EnvHandler)), None)
    if handler is None:
        handler = _EnvHandler()  # sys.stderr
        handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s %(levelname)s] %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)
    return handler
