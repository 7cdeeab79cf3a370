"""face-detect: both models' shapes and every documented failure, provoked on demand."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from emulator_http import Api, host_inputs, mask

from emoclient.emulator import EmulatorConfig, RunningEmulator, serve
from emoclient.emulator.samples import portrait_bytes

NO_PERSON = "The input image has no human body. Please upload other image with single person."
MULTI = "The input image has multi human bodies. Please upload other image with single person."
POSE = (
    "The pose of the detected face is invalid, please upload other image with the expected "
    "orientation."
)
POSE_EMOJI = POSE.replace("orientation", "oriention")
DARK = "The value of the image is invalid, please upload other clearer image."
RESOLUTION = (
    "The image resolution is invalid, please make sure that the largest length of image is "
    "smaller than 7000, and the smallest length of image is larger than 400."
)


@pytest.fixture
async def api(emulator: RunningEmulator) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, emulator, "sk-detect")


def _failed(code: str, message: str, *, humanoid: bool = True) -> dict[str, object]:
    return {
        "output": {"check_pass": False, "humanoid": humanoid, "code": code, "message": message},
        "usage": {"image_count": 1},
        "request_id": "<uuid>",
    }


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        pytest.param(
            portrait_bytes(persons=0),
            _failed("InvalidFile.Content", NO_PERSON, humanoid=False),
            id="nobody",
        ),
        pytest.param(portrait_bytes(persons=2), _failed("InvalidFile.Content", MULTI), id="two"),
        pytest.param(portrait_bytes(brightness=0.1), _failed("InvalidFile.Value", DARK), id="dark"),
        pytest.param(
            portrait_bytes(width=390, height=600),
            _failed("InvalidFile.Resolution", RESOLUTION),
            id="small",
        ),
        pytest.param(
            portrait_bytes(fail="InvalidFile.FacePose"),
            _failed("InvalidFile.FacePose", POSE),
            id="pose",
        ),
    ],
)
async def test_emo_detect_failures_answer_200_and_are_billed(
    api: Api, image: bytes, expected: dict[str, object]
) -> None:
    url = api.emulator.host_file("case.png", image)
    reply = await api.detect(url, ratio="1:1")
    assert reply.status == 200
    assert mask(reply.body) == expected


@pytest.mark.parametrize(
    "code",
    ["InvalidFile.FrontBody", "InvalidFile.FullFace", "InvalidFile.BodyProportion"],
)
async def test_any_documented_code_can_be_provoked_with_a_marker(api: Api, code: str) -> None:
    url = api.emulator.host_file("marked.png", portrait_bytes(fail=code))
    reply = await api.detect(url)
    assert reply.body["output"]["check_pass"] is False
    assert reply.body["output"]["code"] == code


async def test_emoji_detect_failure_has_no_check_pass_and_keeps_the_typo(api: Api) -> None:
    url = api.emulator.host_file("pose.png", portrait_bytes(fail="InvalidFile.FacePose"))
    reply = await api.detect(url, model="emoji-detect-v1", ratio="1:1")
    assert reply.status == 200
    assert mask(reply.body) == {
        "output": {"code": "InvalidFile.FacePose", "message": POSE_EMOJI},
        "usage": {"image_count": 1},
        "request_id": "<uuid>",
    }


async def test_boxes_lie_inside_the_image(api: Api) -> None:
    image, _ = host_inputs(api.emulator)
    reply = await api.detect(image, ratio="3:4")
    for box in (reply.body["output"]["face_bbox"], reply.body["output"]["ext_bbox"]):
        x1, y1, x2, y2 = box
        assert 0 <= x1 < x2 <= 768
        assert 0 <= y1 < y2 <= 1024


async def test_a_large_image_is_downloaded_whole(api: Api) -> None:
    # A 2.3 MB BMP arrives over several reads; the detector must see all of it.
    image = api.emulator.host_file("large.bmp", portrait_bytes(fmt="bmp"))
    reply = await api.detect(image)
    assert reply.status == 200, reply.body
    assert reply.body["output"]["check_pass"] is True


async def test_unreadable_image_is_a_request_error(api: Api) -> None:
    url = api.emulator.host_file("notes.png", b"this is not an image at all")
    reply = await api.detect(url)
    assert reply.status == 400
    assert reply.body["code"] == "InvalidURL"
    assert "usage" not in reply.body


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        (
            {"input": {"image_url": "http://x/a.png"}},
            400,
            "BadRequest.EmptyModel",
            'Required parameter "model" missing from request.',
        ),
        (
            {"model": "emo-v9", "input": {"image_url": "http://x/a.png"}},
            404,
            "ModelNotFound",
            "Model can not be found.",
        ),
        (
            {"model": "emo-detect-v1", "input": {}},
            400,
            "InvalidURL",
            "Required URL is missing or invalid, please check the request URL.",
        ),
        (
            {"model": "emo-detect-v1", "input": {"image_url": "ftp://x/a.png"}},
            400,
            "InvalidURL",
            "Required URL is missing or invalid, please check the request URL.",
        ),
    ],
)
async def test_request_errors_use_the_error_envelope(
    api: Api, body: dict[str, object], status: int, code: str, message: str
) -> None:
    reply = await api.call("POST", "/services/aigc/image2video/face-detect", json=body)
    assert reply.status == status
    assert mask(reply.body) == {"request_id": "<uuid>", "code": code, "message": message}


@pytest.mark.parametrize("ratio", ["4:3", ["1:1"], {"w": 1}])
async def test_a_bad_ratio_is_invalid_parameter(api: Api, ratio: object) -> None:
    image, _ = host_inputs(api.emulator)
    reply = await api.detect(image, ratio=ratio)
    assert reply.status == 400
    assert mask(reply.body) == {
        "request_id": "<uuid>",
        "code": "InvalidParameter",
        "message": (
            "The request is missing required parameters or in a wrong format, "
            "please check the parameters that you send."
        ),
    }


async def test_malformed_body(api: Api) -> None:
    reply = await api.call("POST", "/services/aigc/image2video/face-detect", data=b"{nope")
    assert reply.status == 400
    assert mask(reply.body) == {
        "request_id": "<uuid>",
        "code": "InvalidParameter",
        "message": "Required body invalid, please check the request body format.",
    }


async def test_unreachable_image_is_a_data_inspection_error(api: Api) -> None:
    reply = await api.detect(f"{api.emulator.files_url}/public/missing.png")
    assert reply.status == 400
    assert reply.body["code"] == "InvalidParameter.DataInspection"
    assert reply.body["message"] == (
        "Unable to download the media resource during the data inspection process."
    )


async def test_missing_key_is_401(emulator: RunningEmulator) -> None:
    async with aiohttp.ClientSession() as session:
        api = Api(session, emulator, "")
        reply = await api.detect("http://x/a.png")
    assert reply.status == 401
    assert mask(reply.body) == {
        "request_id": "<uuid>",
        "code": "InvalidApiKey",
        "message": "Invalid API-key provided.",
    }


async def test_restricted_keys_refuse_others() -> None:
    async with serve(EmulatorConfig.fast(api_keys=frozenset({"sk-good"}))) as emu:
        image, _ = host_inputs(emu)
        async with aiohttp.ClientSession() as session:
            good = await Api(session, emu, "sk-good").detect(image)
            bad = await Api(session, emu, "sk-bad").detect(image)
    assert good.status == 200
    assert bad.status == 401
    assert bad.body["code"] == "InvalidApiKey"
