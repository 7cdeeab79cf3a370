"""What a client did to ride out trouble: requests sent again, by call kind, and waits for
the account's rate limits. Counted by the transport, the download and the batch; read by
the batch summary. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RETRY_KINDS", "ClientActivity", "kind_of_path"]

#: The call kinds retries are counted by.
RETRY_KINDS = ("upload", "detect", "submit", "query", "download")


def kind_of_path(path: str) -> str:
    """The call kind of an API path (``tasks/...``, ``uploads``, ``.../face-detect``, ...)."""
    path = path.lstrip("/")
    if path.startswith("tasks"):
        return "query"
    if path.startswith("uploads"):
        return "upload"
    if path.endswith("face-detect"):
        return "detect"
    return "submit"


@dataclass
class ClientActivity:
    """Counters of one client, for its whole life (a batch reports the difference)."""

    #: Requests sent again after a failure, by call kind (see ``RETRY_KINDS``); a broken
    #: download resumed counts as a download retry.
    retries: dict[str, int] = field(default_factory=dict)
    #: Requests that waited for the account's rate limit before going out, and how long.
    rate_waits: int = 0
    rate_wait_seconds: float = 0.0

    def retried(self, kind: str) -> None:
        """One request of ``kind`` is sent again."""
        self.retries[kind] = self.retries.get(kind, 0) + 1

    def waited(self, seconds: float) -> None:
        """One request waited ``seconds`` for the rate limit."""
        if seconds > 0:
            self.rate_waits += 1
            self.rate_wait_seconds += seconds

    def copy(self) -> ClientActivity:
        """A snapshot."""
        return ClientActivity(dict(self.retries), self.rate_waits, self.rate_wait_seconds)

    def since(self, earlier: ClientActivity) -> ClientActivity:
        """What happened after the snapshot ``earlier``."""
        retries = {k: n - earlier.retries.get(k, 0) for k, n in self.retries.items()}
        return ClientActivity(
            {k: n for k, n in retries.items() if n},
            self.rate_waits - earlier.rate_waits,
            self.rate_wait_seconds - earlier.rate_wait_seconds,
        )

    def add(self, other: ClientActivity) -> None:
        """Count ``other`` in."""
        for kind, n in other.retries.items():
            self.retries[kind] = self.retries.get(kind, 0) + n
        self.rate_waits += other.rate_waits
        self.rate_wait_seconds += other.rate_wait_seconds
