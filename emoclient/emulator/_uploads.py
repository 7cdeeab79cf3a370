"""Temporary uploads: the files behind ``oss://`` URLs, bound to an account and a model."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ._config import EmulatorConfig

BUCKET = "dashscope-file-mgr"
ACCESS_KEY_ID = "LTAI5tEmulatorUploads"


@dataclass(frozen=True)
class StoredObject:
    """One uploaded file."""

    data: bytes
    account: str
    model: str
    expires_at: float
    content_type: str


class UploadStore:
    """The fake OSS bucket's objects by key (``dashscope-instant/...``)."""

    def __init__(self) -> None:
        self._objects: dict[str, StoredObject] = {}

    def put(self, key: str, obj: StoredObject, *, now: float) -> None:
        """Store ``obj`` under ``key`` (and forget objects whose 48 hours are over)."""
        expired = [k for k, o in self._objects.items() if o.expires_at <= now]
        for stale in expired:
            del self._objects[stale]
        self._objects[key] = obj

    def exists(self, key: str, *, now: float) -> bool:
        """Whether a live object is stored under ``key``."""
        obj = self._objects.get(key)
        return obj is not None and obj.expires_at > now

    def resolve(self, key: str, *, account: str, model: str, now: float) -> bytes | None:
        """The bytes under ``key`` if the caller may use them now, else None."""
        obj = self._objects.get(key)
        if obj is None or obj.expires_at <= now:
            return None
        if obj.account != account or obj.model != model:
            return None
        return obj.data


@dataclass(frozen=True)
class Grant:
    """Who a policy was issued to: uploads under its directory belong to them."""

    account: str
    model: str
    expires_at: float


class PolicyBook:
    """Signs upload policies and remembers which account and model each directory is for."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)
        self.grants: dict[str, Grant] = {}

    def sign(self, policy: str) -> str:
        """OSS's POST-policy signature: base64(HMAC-SHA1(secret, policy))."""
        digest = hmac.new(self._secret, policy.encode(), hashlib.sha1).digest()
        return base64.b64encode(digest).decode()

    def grant_for(self, key: str) -> Grant | None:
        """The grant of the policy directory ``key`` lies in, if any."""
        # Directories are "dashscope-instant/<owner>/<day>/<uuid>": four segments.
        return self.grants.get("/".join(key.split("/")[:4]))

    def issue(
        self,
        *,
        account: str,
        model: str,
        bound_model: str,
        now: float,
        config: EmulatorConfig,
        upload_host: str,
    ) -> dict[str, Any]:
        """A fresh policy document (the ``data`` of ``GET /uploads?action=getPolicy``)."""
        day = datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%d")
        owner = hashlib.md5(account.encode(), usedforsecurity=False).hexdigest()
        upload_dir = f"dashscope-instant/{owner}/{day}/{uuid.uuid4()}"
        expires_at = now + config.upload_policy_ttl_seconds
        # A policy is only needed until it expires: forget the old ones.
        self.grants = {d: g for d, g in self.grants.items() if g.expires_at > now}
        self.grants[upload_dir] = Grant(account=account, model=bound_model, expires_at=expires_at)
        max_bytes = config.upload_max_file_size_mb * 1024 * 1024
        expiration = datetime.fromtimestamp(expires_at, tz=UTC)
        document = {
            "expiration": expiration.strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{expiration.microsecond // 1000:03d}Z",
            "conditions": [
                ["content-length-range", 0, max_bytes],
                ["starts-with", "$key", upload_dir],
                {"bucket": BUCKET},
                {"x-oss-object-acl": "private"},
                {"x-oss-forbid-overwrite": "true"},
            ],
        }
        policy = base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()
        return {
            "policy": policy,
            "signature": self.sign(policy),
            "upload_dir": upload_dir,
            "upload_host": upload_host,
            "expire_in_seconds": config.upload_policy_ttl_seconds,
            "max_file_size_mb": config.upload_max_file_size_mb,
            "capacity_limit_mb": 999999999,
            "oss_access_key_id": ACCESS_KEY_ID,
            "x_oss_object_acl": "private",
            "x_oss_forbid_overwrite": "true",
        }
