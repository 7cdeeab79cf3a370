"""Small HTTP helpers for the emulator tests: raw requests, raw JSON, masked ids."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import aiohttp

from emoclient.emulator import RunningEmulator
from emoclient.emulator._media import ext_box, locate_face, probe_image
from emoclient.emulator.samples import portrait_bytes, speech_bytes

DETECT = "/services/aigc/image2video/face-detect"
SYNTHESIS = "/services/aigc/image2video/video-synthesis"
ASYNC = {"X-DashScope-Async": "enable"}
RESOLVE = {"X-DashScope-OssResourceResolve": "enable"}
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$")


@dataclass
class Reply:
    """A raw answer: status, headers and the JSON body (or None)."""

    status: int
    body: Any
    headers: dict[str, str]


class Api:
    """Raw calls to the emulator with one API key."""

    def __init__(self, session: aiohttp.ClientSession, emulator: RunningEmulator, key: str):
        self.session = session
        self.emulator = emulator
        self.key = key

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", **(extra or {})}

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> Reply:
        async with self.session.request(
            method,
            self.emulator.base_url + path,
            json=json,
            data=data,
            params=params,
            headers=self.headers(headers),
        ) as response:
            text = await response.text()
            body = await response.json(content_type=None) if text else None
            return Reply(response.status, body, dict(response.headers))

    async def detect(self, image_url: str, *, model: str = "emo-detect-v1", **kw: Any) -> Reply:
        body: dict[str, Any] = {"model": model, "input": {"image_url": image_url}}
        if kw:
            body["parameters"] = kw
        return await self.call("POST", DETECT, json=body)

    async def submit(self, body: dict[str, Any], **headers: str) -> Reply:
        return await self.call("POST", SYNTHESIS, json=body, headers={**ASYNC, **headers})

    async def task(self, task_id: str) -> Reply:
        return await self.call("GET", f"/tasks/{task_id}")


def mask(value: Any) -> Any:
    """``value`` with UUIDs and service time strings replaced by placeholders."""
    if isinstance(value, dict):
        return {k: mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    if isinstance(value, str) and _UUID.match(value):
        return "<uuid>"
    if isinstance(value, str) and _TIME.match(value):
        return "<time>"
    return value


_PORTRAIT = portrait_bytes()


def host_inputs(emulator: RunningEmulator, *, seconds: float = 3.0) -> tuple[str, str]:
    """Public URLs of the default sample portrait and a speech clip of ``seconds``."""
    image = emulator.host_file("portrait.png", _PORTRAIT)
    audio = emulator.host_file(f"speech-{seconds}.wav", speech_bytes(seconds=seconds))
    return image, audio


@functools.cache
def sample_boxes(ratio: str = "1:1") -> tuple[list[int], list[int]]:
    """face_bbox and ext_bbox of the default sample portrait (what detection answers)."""
    info = probe_image(_PORTRAIT)
    face = locate_face(_PORTRAIT).face_bbox
    ext = ext_box(
        face, ratio="3:4" if ratio == "3:4" else "1:1", width=info.width, height=info.height
    )
    return list(face), list(ext)


def emo_body(
    emulator: RunningEmulator, *, seconds: float = 3.0, ratio: str = "1:1"
) -> dict[str, Any]:
    """A valid emo-v1 body for the sample portrait and a speech clip of ``seconds``."""
    image, audio = host_inputs(emulator, seconds=seconds)
    face, ext = sample_boxes(ratio)
    return {
        "model": "emo-v1",
        "input": {"image_url": image, "audio_url": audio, "face_bbox": face, "ext_bbox": ext},
        "parameters": {"style_level": "normal"},
    }


def emoji_body(emulator: RunningEmulator, *, driven_id: str = "mengwa_kaixin") -> dict[str, Any]:
    """A valid emoji-v1 body for the sample portrait."""
    image, _ = host_inputs(emulator)
    face, ext = sample_boxes("1:1")
    return {
        "model": "emoji-v1",
        "input": {"image_url": image, "driven_id": driven_id, "face_bbox": face, "ext_bbox": ext},
    }


async def upload_policy(api: Api, model: str = "emo-v1") -> dict[str, Any]:
    """A fresh upload policy (the ``data`` of ``GET /uploads?action=getPolicy``)."""
    reply = await api.call("GET", "/uploads", params={"action": "getPolicy", "model": model})
    assert reply.status == 200, reply.body
    data: dict[str, Any] = reply.body["data"]
    return data


async def upload_file(
    api: Api, policy: dict[str, Any], name: str, data: bytes, **overrides: str
) -> tuple[int, str]:
    """POST ``data`` as ``name`` to the policy's upload host; the status and body text."""
    fields = {
        "OSSAccessKeyId": policy["oss_access_key_id"],
        "Signature": policy["signature"],
        "policy": policy["policy"],
        "key": f"{policy['upload_dir']}/{name}",
        "x-oss-object-acl": policy["x_oss_object_acl"],
        "x-oss-forbid-overwrite": policy["x_oss_forbid_overwrite"],
        "success_action_status": "200",
        "x-oss-content-type": "audio/wav",
        **overrides,
    }
    form = aiohttp.FormData()
    for field, value in fields.items():
        form.add_field(field, value)
    form.add_field("file", data, filename=name, content_type="audio/wav")
    async with api.session.post(policy["upload_host"], data=form) as response:
        return response.status, await response.text()
