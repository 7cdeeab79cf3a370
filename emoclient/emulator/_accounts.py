"""Which account an API key belongs to, and the labels accounts and keys are known by.

The service's limits belong to the Alibaba Cloud account behind a key, adding up all its
keys (API.md §3.1). A key alone cannot tell its account, so the emulator is told: no list
(any key is its own account), a set of keys (each its own account) or ``{key: account}``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

#: What ``EmulatorConfig.api_keys`` holds: None, a set of keys or ``{key: account name}``.
ApiKeys = frozenset[str] | Mapping[str, str] | None

_HASHED_LABEL = re.compile(r"acct-[0-9a-f]{8}")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def account_label(api_key: str) -> str:
    """The label of the account of a key that is its own account: never the raw key."""
    return "acct-" + _digest(api_key)


def key_label(api_key: str) -> str:
    """The id a key is shown under in task lists (``api_key_id``): never the raw key."""
    return "key-" + _digest(api_key)


def check_accounts(keys: Mapping[str, str]) -> None:
    """Refuse a ``{key: account}`` map whose accounts could be mixed up; ValueError says how.

    An account named like another key would merge with that key's own account (or its
    label would give the key away), and a name shaped like a hashed label could collide
    with the label of a key that is its own account.
    """
    for key, name in keys.items():
        if not key or not name:
            raise ValueError("API keys and account names must not be empty")
        if name == key:
            continue
        if name in keys:
            raise ValueError(
                "an account name must not be another API key: "
                "map a key to itself (or list it alone) to make it its own account"
            )
        if _HASHED_LABEL.fullmatch(name):
            raise ValueError(
                f"account name {name!r} looks like the label of a key that is its own "
                "account (acct- and 8 hex digits); choose another name"
            )


def label_for(keys: ApiKeys, api_key: str) -> str | None:
    """The label of ``api_key``'s account, or None if the key is not accepted.

    A named account is shown under its name; a key that is its own account under a hash.
    """
    if not api_key:
        return None
    if keys is None:
        return account_label(api_key)
    if isinstance(keys, frozenset):
        return account_label(api_key) if api_key in keys else None
    name = keys.get(api_key)
    if name is None:
        return None
    return account_label(api_key) if name == api_key else name
