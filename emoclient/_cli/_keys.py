"""``--api-key-file``: several keys (and their accounts) for one batch, read and checked."""

from __future__ import annotations

from pathlib import Path

__all__ = ["read_keys"]


def read_keys(
    api_key: str | None, api_key_file: Path | None
) -> list[tuple[str | None, str | None, str]]:
    """``(key, account, where)`` per key: ``--api-key-file``'s lines, else the one key.

    ``where`` names a key in messages without showing it. Blocking (reads a file).
    """
    if api_key_file is None:
        return [(api_key, None, "DASHSCOPE_API_KEY")]
    path = api_key_file
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the --api-key-file {path}: {exc}") from None
    keys: list[tuple[str | None, str | None, str]] = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        key, sep, account = (part.strip() for part in text.partition("="))
        where = f"the key on line {number} of {path}"
        if not key or (sep and not account) or any(c.isspace() for c in key):
            raise ValueError(
                f"the --api-key-file line {number} of {path} is not KEY or KEY=ACCOUNT"
            )
        keys.append((key, account or None, where))
    if not keys:
        raise ValueError(
            f"the --api-key-file {path} holds no key (one per line: KEY or KEY=ACCOUNT)"
        )
    return keys
