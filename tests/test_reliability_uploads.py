"""Uploads ride out failures of the policy call and of the storage POST, like every read."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from client_support import FAST_RETRY, account_stats, make_client, new_key, speech

from emoclient import APIStatusError, MemoryStore, RetryPolicy, UploadedFile, UploadError
from emoclient._transport import Transport
from emoclient.emulator import RunningEmulator

UPLOAD_ROUTES = ("upload_policy", "oss_upload")
# 10 % 5xx, 5 % dropped connections and 3 % lost answers on both upload routes.
FAULT_MIX: dict[str, Any] = {
    "error_rate": dict.fromkeys(UPLOAD_ROUTES, 0.10),
    "drop_rate": dict.fromkeys(UPLOAD_ROUTES, 0.05),
    "drop_after_rate": dict.fromkeys(UPLOAD_ROUTES, 0.03),
    "seed": 2024,
}
PATIENT = RetryPolicy(max_attempts=6, base_delay=0.001, max_delay=0.01)


def _stored(emulator: RunningEmulator, uploaded: UploadedFile) -> bool:
    key = uploaded.url.removeprefix("oss://")
    return emulator.state.uploads.exists(key, now=emulator.now())


async def _upload_many(
    emulator: RunningEmulator, source: Path, count: int
) -> tuple[list[UploadedFile], list[UploadError]]:
    """``count`` uploads, each by a new client so that each also fetches its policy.

    The clients share the account's limits, as clients on one key do by default.
    """
    key, store = new_key(), MemoryStore()
    done: list[UploadedFile] = []
    failed: list[UploadError] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            options: dict[str, Any] = {"retry": PATIENT, "session": session, "store": store}
            async with make_client(emulator, api_key=key, **options) as c:
                try:
                    done.append(await c.upload(source, model="emo-v1"))
                except UploadError as exc:  # what a storage failure used to end as
                    failed.append(exc)
    return done, failed


async def test_a_hundred_uploads_survive_the_fault_mix(
    emulator: RunningEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.set_faults(**FAULT_MIX)
    with caplog.at_level(logging.INFO, logger="emoclient"):
        done, failed = await _upload_many(emulator, speech(tmp_path), 100)
    assert failed == []
    assert len(done) == 100
    assert all(_stored(emulator, uploaded) for uploaded in done)
    retried = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    # The mix did strike both routes, and some answers were lost after the object landed.
    assert any(m.startswith("getting an upload policy") for m in retried)
    assert any(m.startswith("uploading voice.wav") for m in retried)
    assert any("already stored" in r.getMessage() for r in caplog.records)


async def test_a_lost_answer_then_already_stored_is_success(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    # Seed 1: the first POST's answer is lost after storing, the retry is answered (409).
    emulator.set_faults(seed=1, drop_after_rate={"oss_upload": 0.5})
    async with make_client(emulator) as client:
        uploaded = await client.upload(speech(tmp_path), model="emo-v1")
    assert _stored(emulator, uploaded)


async def test_storage_failures_are_retried_then_reported(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    emulator.set_faults(error_rate={"oss_upload": 1.0})
    async with make_client(emulator) as client:
        with pytest.raises(UploadError, match=r"voice\.wav") as caught:
            await client.upload(speech(tmp_path), model="emo-v1")
    assert isinstance(caught.value.__cause__, APIStatusError)
    assert caught.value.__cause__.status in (500, 503)
    # Refused before the form is read, so the route counts nothing; the policy came once.
    assert account_stats(await emulator.stats())["routes"]["upload_policy"]["requests"] == 1


async def test_a_conflict_on_the_first_attempt_is_a_failure(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    # Only a retry may read 409 as "my earlier attempt landed"; a first attempt that meets an
    # existing object wrote nothing.
    transport = Transport(
        api_key=new_key(),
        base_url=emulator.base_url,
        workspace=None,
        timeout=10.0,
        session=None,
        retry=FAST_RETRY,
    )
    try:
        body = await transport.call(
            "GET",
            "uploads",
            operation="policy",
            limiter=None,
            params={"action": "getPolicy", "model": "emo-v1"},
        )
        form = _form_factory(body["data"], f"{body['data']['upload_dir']}/same.wav")
        await transport.post_form(body["data"]["upload_host"], form, operation="first", size=5)
        with pytest.raises(APIStatusError) as caught:
            await transport.post_form(body["data"]["upload_host"], form, operation="again", size=5)
    finally:
        await transport.aclose()
    assert (caught.value.status, caught.value.code) == (409, "FileAlreadyExists")


def _form_factory(policy: dict[str, Any], key: str) -> Callable[[], Any]:
    @asynccontextmanager
    async def form() -> AsyncIterator[aiohttp.FormData]:
        data = aiohttp.FormData()
        for name, value in (
            ("OSSAccessKeyId", policy["oss_access_key_id"]),
            ("Signature", policy["signature"]),
            ("policy", policy["policy"]),
            ("key", key),
            ("x-oss-object-acl", policy["x_oss_object_acl"]),
            ("x-oss-forbid-overwrite", policy["x_oss_forbid_overwrite"]),
            ("success_action_status", "200"),
        ):
            data.add_field(name, value)
        data.add_field("file", b"RIFF1", filename="same.wav", content_type="audio/wav")
        yield data

    return form
