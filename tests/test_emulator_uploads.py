"""Temporary uploads: the policy, the fake OSS form POST and ``oss://`` resolution."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from emulator_http import RESOLVE, Api, emo_body, mask, upload_file, upload_policy

from emoclient.emulator import EmulatorConfig, RunningEmulator, serve
from emoclient.emulator.samples import speech_bytes


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig.fast(speed=0.0)


@pytest.fixture
async def api(emulator: RunningEmulator) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, emulator, "sk-uploads")


async def test_policy_shape_and_decoded_conditions(api: Api) -> None:
    reply = await api.call("GET", "/uploads", params={"action": "getPolicy", "model": "emo-v1"})
    data = reply.body["data"]
    assert set(reply.body) == {"data", "request_id"}
    assert {k: v for k, v in data.items() if k not in ("policy", "signature", "upload_dir")} == {
        "upload_host": api.emulator.files_url,
        "expire_in_seconds": 300,
        "max_file_size_mb": 1024,
        "capacity_limit_mb": 999999999,
        "oss_access_key_id": data["oss_access_key_id"],
        "x_oss_object_acl": "private",
        "x_oss_forbid_overwrite": "true",
    }
    assert data["upload_dir"].startswith("dashscope-instant/")
    document = json.loads(base64.b64decode(data["policy"]))
    assert document["conditions"] == [
        ["content-length-range", 0, 1024 * 1024 * 1024],
        ["starts-with", "$key", data["upload_dir"]],
        {"bucket": "dashscope-file-mgr"},
        {"x-oss-object-acl": "private"},
        {"x-oss-forbid-overwrite": "true"},
    ]
    assert document["expiration"].endswith("Z")


async def test_policy_needs_the_action_and_a_model(api: Api) -> None:
    assert (await api.call("GET", "/uploads", params={"model": "emo-v1"})).status == 400
    no_model = await api.call("GET", "/uploads", params={"action": "getPolicy"})
    assert no_model.body["code"] == "BadRequest.EmptyModel"


async def test_upload_then_use_with_the_resolve_header(api: Api) -> None:
    policy = await upload_policy(api)
    status, _ = await upload_file(api, policy, "voice.wav", speech_bytes(seconds=2.0))
    assert status == 200
    body = emo_body(api.emulator)
    body["input"]["audio_url"] = f"oss://{policy['upload_dir']}/voice.wav"
    without = await api.submit(body)
    assert (without.status, mask(without.body)) == (
        400,
        {
            "request_id": "<uuid>",
            "code": "InvalidURL",
            "message": "Invalid URL provided in your request.",
        },
    )
    accepted = await api.submit(body, **RESOLVE)
    assert accepted.status == 200, accepted.body


async def test_a_key_that_is_not_utf8_is_refused_with_oss_xml(api: Api) -> None:
    policy = await upload_policy(api)
    form = aiohttp.FormData()
    form.add_field("OSSAccessKeyId", policy["oss_access_key_id"])
    form.add_field("Signature", policy["signature"])
    form.add_field("policy", policy["policy"])
    # Raw bytes travel as a file part; the form is read by part name either way.
    form.add_field("key", policy["upload_dir"].encode() + b"/caf\xe9.wav", filename="key")
    form.add_field("x-oss-object-acl", "private")
    form.add_field("x-oss-forbid-overwrite", "true")
    form.add_field("file", b"RIFF", filename="voice.wav")
    async with api.session.post(policy["upload_host"], data=form) as response:
        status, text = response.status, await response.text()
    assert status == 400
    assert "<Code>InvalidObjectName</Code>" in text


async def test_overwrite_is_refused_with_oss_xml(api: Api) -> None:
    policy = await upload_policy(api)
    assert (await upload_file(api, policy, "a.wav", b"RIFF1"))[0] == 200
    status, text = await upload_file(api, policy, "a.wav", b"RIFF2")
    assert status == 409
    assert "<Code>FileAlreadyExists</Code>" in text


async def test_an_upload_whose_answer_is_lost_is_stored(api: Api) -> None:
    policy = await upload_policy(api)
    api.emulator.set_faults(drop_after_rate={"oss_upload": 1.0})
    with pytest.raises(aiohttp.ClientError):
        await upload_file(api, policy, "lost.wav", b"RIFF1")
    api.emulator.set_faults(drop_after_rate={})
    # The object landed: sending it again meets the overwrite guard.
    status, text = await upload_file(api, policy, "lost.wav", b"RIFF1")
    assert status == 409
    assert "<Code>FileAlreadyExists</Code>" in text


async def test_a_dropped_upload_is_not_stored(api: Api) -> None:
    policy = await upload_policy(api)
    api.emulator.set_faults(drop_rate={"oss_upload": 1.0})
    with pytest.raises(aiohttp.ClientError):
        await upload_file(api, policy, "dropped.wav", b"RIFF1")
    api.emulator.set_faults(drop_rate={})
    assert (await upload_file(api, policy, "dropped.wav", b"RIFF1"))[0] == 200


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"Signature": "forged="}, 403, "SignatureDoesNotMatch"),
        ({"key": "dashscope-instant/elsewhere/x.wav"}, 403, "AccessDenied"),
        ({"x-oss-forbid-overwrite": "false"}, 403, "AccessDenied"),
        ({"x-oss-object-acl": "public-read"}, 403, "AccessDenied"),
    ],
)
async def test_form_must_match_its_policy(
    api: Api, overrides: dict[str, str], status: int, code: str
) -> None:
    policy = await upload_policy(api)
    got, text = await upload_file(api, policy, "b.wav", b"RIFF", **overrides)
    assert got == status
    assert f"<Code>{code}</Code>" in text


async def test_policy_expires_after_300_seconds(api: Api) -> None:
    policy = await upload_policy(api)
    api.emulator.advance(301)
    status, text = await upload_file(api, policy, "late.wav", b"RIFF")
    assert status == 403
    assert "Policy expired" in text


async def test_size_limit_from_the_policy() -> None:
    config = EmulatorConfig.fast(upload_max_file_size_mb=0)
    async with serve(config) as emu, aiohttp.ClientSession() as session:
        api = Api(session, emu, "sk")
        status, text = await upload_file(api, await upload_policy(api), "big.wav", b"x")
    assert status == 400
    assert "<Code>EntityTooLarge</Code>" in text


async def test_oss_url_is_bound_to_model_and_account(api: Api, emulator: RunningEmulator) -> None:
    policy = await upload_policy(api, model="emoji-v1")
    await upload_file(api, policy, "voice.wav", speech_bytes(seconds=2.0))
    body = emo_body(emulator)
    body["input"]["audio_url"] = f"oss://{policy['upload_dir']}/voice.wav"
    wrong_model = await api.submit(body, **RESOLVE)
    assert wrong_model.body["code"] == "InvalidParameter.DataInspection"
    policy = await upload_policy(api, model="emo-v1")
    await upload_file(api, policy, "voice.wav", speech_bytes(seconds=2.0))
    body["input"]["audio_url"] = f"oss://{policy['upload_dir']}/voice.wav"
    other = Api(api.session, emulator, "sk-someone-else")
    assert (await other.submit(body, **RESOLVE)).body["code"] == ("InvalidParameter.DataInspection")
    assert (await api.submit(body, **RESOLVE)).status == 200


async def test_oss_url_expires_after_48_hours(api: Api) -> None:
    policy = await upload_policy(api)
    await upload_file(api, policy, "voice.wav", speech_bytes(seconds=2.0))
    body = emo_body(api.emulator)
    body["input"]["audio_url"] = f"oss://{policy['upload_dir']}/voice.wav"
    api.emulator.advance(48 * 3600 - 1)
    assert (await api.submit(body, **RESOLVE)).status == 200
    api.emulator.advance(1)
    assert (await api.submit(body, **RESOLVE)).status == 400


async def test_uploads_count_in_stats_and_never_see_authorization(api: Api) -> None:
    policy = await upload_policy(api)
    await upload_file(api, policy, "c.wav", b"RIFF")
    stats = await api.emulator.stats()
    routes = next(iter(stats["accounts"].values()))["routes"]
    assert routes["upload_policy"]["requests"] == 1
    assert routes["oss_upload"]["requests"] == 1
    assert stats["foreign_auth_headers"] == 0
    async with api.session.post(
        policy["upload_host"], data=b"", headers={"Authorization": "Bearer leaked"}
    ) as response:
        assert response.status == 400
    assert (await api.emulator.stats())["foreign_auth_headers"] == 1
