"""One arm of bench_makespan.py, run in its own process: jobs in, videos on disk, a JSON out.

    python benchmarks/makespan_arm.py SPEC.json RESULT.json

The spec names the arm, the emulator, the account key, the speed factor, the jobs (local
paths or http URLs) and the output folder. Arms:

- ``batch``: emoclient's ``Batch`` with its defaults, every limit and interval scaled;
- ``sdk-sequential``: the official SDK (``dashscope``), its ``AioVideoSynthesis`` one job after
  another: detection (``BaseAioApi.call``, the SDK's async path for a synchronous model),
  ``async_call``, ``wait``, then a plain aiohttp download;
- ``sdk-gathered``: the same pipeline for every job at once under ``asyncio.gather``;
- ``aiohttp``: a plain hand-written client, aiohttp + aiolimiter (``AsyncLimiter(rate, 1)`` per
  route, its period divided by the speed), every job gathered, polling 1, 2, 4 ... 30 s per
  task, a 429 retried after 1 s.

Time is compressed by the speed factor everywhere: the SDK's own waits (its 1-5 s poll
schedule) run through a shim that divides them by the speed. This file imports emoclient only
in the ``batch`` arm, so the SDK arms also run in a venv holding just ``dashscope``.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
import types
from pathlib import Path
from typing import Any

SDK_HEADERS = {"X-DashScope-OssResourceResolve": "enable"}
#: What the arm delivered so far, kept outside the arm so that a deadline loses none of it.
VIDEOS: dict[str, dict[str, str]] = {}
ERRORS: list[str] = []


class ArmError(Exception):
    """A job that could not be carried through; the arm records it and goes on."""


def _file_url(path: str) -> str:
    return f"file://{Path(path).resolve()}"


# --- emoclient ---


async def _batch(spec: dict[str, Any]) -> dict[str, Any]:
    from emoclient import (
        Batch,
        EmoClient,
        EmoJob,
        MemoryStore,
        Rates,
        RetryPolicy,
        SchedulerOptions,
    )

    speed = spec["speed"]
    rates = Rates(submit=5 * speed, query=20 * speed, detect=5 * speed, upload=100 * speed)
    options = SchedulerOptions(
        poll_min=0.05 / speed,
        poll_max=30.0 / speed,
        pending_poll=60.0 / speed,
        queries_per_second=5.0 * speed,
        retry=RetryPolicy(max_attempts=4, base_delay=0.5 / speed, max_delay=8.0 / speed),
    )
    jobs = [
        EmoJob(image=job["image"], audio=job["audio"], output=f"v{i}.mp4", label=str(i))
        for i, job in enumerate(spec["jobs"])
    ]
    videos, errors = VIDEOS, ERRORS
    async with (
        EmoClient(spec["key"], base_url=spec["base_url"], rates=rates, store=MemoryStore()) as c,
        Batch(c, out_dir=spec["out"], options=options) as batch,
    ):
        async for result in batch.run(jobs):
            if result.status == "succeeded" and result.path is not None:
                videos[result.job.label or ""] = {
                    "task_id": result.task_id or "",
                    "path": str(result.path),
                }
            else:
                errors.append(f"job {result.job.label}: {result.status} {result.error}")
    return {"videos": videos, "errors": errors}


# --- the official SDK ---


def _compress_sdk_time(speed: float) -> None:
    """The SDK's waits (asyncio.sleep in its pollers) run ``speed`` times faster."""
    import dashscope.client.base_api as base_api

    real = asyncio.sleep

    async def sleep(delay: float, result: Any = None) -> Any:
        return await real(delay / speed, result)

    shim = types.SimpleNamespace(**{n: getattr(asyncio, n) for n in dir(asyncio) if n[0] != "_"})
    shim.sleep = sleep
    base_api.asyncio = shim  # type: ignore[attr-defined]


async def _download(session: Any, url: str, path: Path) -> None:
    part = path.with_suffix(".part")
    async with session.get(url) as answer:
        if answer.status != 200:
            raise ArmError(f"download answered {answer.status}")
        with part.open("wb") as handle:
            async for chunk in answer.content.iter_chunked(256 * 1024):
                handle.write(chunk)
    part.replace(path)


async def _sdk_job(spec: dict[str, Any], index: int, session: Any) -> dict[str, str]:
    from dashscope.aigc.video_synthesis import AioVideoSynthesis
    from dashscope.client.base_api import BaseAioApi
    from dashscope.utils.oss_utils import check_and_upload_local

    key, job = spec["key"], spec["jobs"][index]
    image, audio, headers = job["image"], job["audio"], {}
    if not image.startswith("http"):
        # EMO's image_url is not one of the fields the SDK uploads by itself: upload it with
        # the SDK's own helper, once per model (an upload serves only the model it names).
        def upload(model: str) -> str:
            return str(check_and_upload_local(model, _file_url(image), key)[1])

        detect_image = await asyncio.to_thread(upload, "emo-detect-v1")
        image = await asyncio.to_thread(upload, "emo-v1")
        audio, headers = _file_url(audio), SDK_HEADERS
    else:
        detect_image = image
    detected = await BaseAioApi.call(
        model="emo-detect-v1",
        input={"image_url": detect_image},
        task_group="aigc",
        task="image2video",
        function="face-detect",
        api_key=key,
        headers=dict(headers),
    )
    if detected.status_code != 200 or not detected.output.get("check_pass"):
        raise ArmError(f"detection: {detected.status_code} {detected.code}")
    submitted = await AioVideoSynthesis.async_call(
        model="emo-v1",
        task="image2video",
        api_key=key,
        audio_url=audio,  # a file:// path: the SDK uploads it itself
        extra_input={
            "image_url": image,
            "face_bbox": detected.output["face_bbox"],
            "ext_bbox": detected.output["ext_bbox"],
        },
        headers=dict(headers),
    )
    if submitted.status_code != 200:
        raise ArmError(f"submit: {submitted.status_code} {submitted.code}")
    task_id = submitted.output.task_id
    done = await AioVideoSynthesis.wait(task_id, api_key=key)
    if done.status_code != 200 or done.output.task_status != "SUCCEEDED":
        raise ArmError(f"wait: {done.status_code} {done.code} {done.output}")
    path = Path(spec["out"]) / f"v{index}.mp4"
    await _download(session, done.output.video_url or done.output.results["video_url"], path)
    return {"task_id": task_id, "path": str(path)}


async def _sdk(spec: dict[str, Any], *, gathered: bool) -> dict[str, Any]:
    import aiohttp
    import dashscope

    dashscope.base_http_api_url = spec["base_url"]
    _compress_sdk_time(spec["speed"])
    videos, errors = VIDEOS, ERRORS
    async with aiohttp.ClientSession() as session:

        async def one(index: int) -> None:
            try:
                videos[str(index)] = await _sdk_job(spec, index, session)
            except Exception as exc:  # a lost job is a result of this arm, not a crash
                errors.append(f"job {index}: {type(exc).__name__}: {exc}")

        if gathered:
            await asyncio.gather(*(one(i) for i in range(len(spec["jobs"]))))
        else:
            for i in range(len(spec["jobs"])):
                await one(i)
    return {"videos": videos, "errors": errors, "sdk_version": dashscope.version.__version__}


# --- a plain hand-written client: aiohttp + aiolimiter ---


class Plain:
    """What one writes by hand in an afternoon: one limiter per route, fixed backoff."""

    def __init__(self, spec: dict[str, Any], session: Any) -> None:
        from aiolimiter import AsyncLimiter

        speed = spec["speed"]
        self.spec, self.session, self.speed = spec, session, speed
        self.base = spec["base_url"].rstrip("/")
        self.auth = {"Authorization": f"Bearer {spec['key']}"}
        self.limits = {
            name: AsyncLimiter(rate, 1 / speed)  # AsyncLimiter(rate, 1), time compressed
            for name, rate in (("submit", 5), ("detect", 5), ("query", 20), ("upload", 100))
        }
        self.policies: dict[str, dict[str, Any]] = {}

    async def request(self, route: str, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        while True:
            async with (
                self.limits[route],
                self.session.request(method, url, **kwargs) as answer,
            ):
                body = await answer.json(content_type=None)
            if answer.status == 429:
                await asyncio.sleep(1.0 / self.speed)
                continue
            if answer.status != 200:
                raise ArmError(f"{route}: {answer.status} {body}")
            return dict(body)

    async def upload(self, path: str, model: str) -> str:
        import aiohttp

        if model not in self.policies:
            url = f"{self.base}/uploads"
            params = {"action": "getPolicy", "model": model}
            body = await self.request("upload", "GET", url, params=params, headers=self.auth)
            self.policies[model] = body["data"]
        policy = self.policies[model]
        key = f"{policy['upload_dir']}/{time.time_ns()}/{Path(path).name}"
        form = aiohttp.FormData()
        form.add_field("OSSAccessKeyId", policy["oss_access_key_id"])
        form.add_field("Signature", policy["signature"])
        form.add_field("policy", policy["policy"])
        form.add_field("key", key)
        form.add_field("x-oss-object-acl", policy["x_oss_object_acl"])
        form.add_field("x-oss-forbid-overwrite", policy["x_oss_forbid_overwrite"])
        form.add_field("success_action_status", "200")
        data = await asyncio.to_thread(Path(path).read_bytes)
        form.add_field("file", data, filename=Path(path).name)
        async with self.session.post(policy["upload_host"], data=form) as answer:
            if answer.status != 200:
                raise ArmError(f"upload: {answer.status}")
        return f"oss://{key}"

    async def job(self, index: int) -> dict[str, str]:
        job = self.spec["jobs"][index]
        image, audio, headers = job["image"], job["audio"], dict(self.auth)
        detect_image = image
        if not image.startswith("http"):
            detect_image = await self.upload(image, "emo-detect-v1")
            image = await self.upload(image, "emo-v1")
            audio = await self.upload(audio, "emo-v1")
            headers.update(SDK_HEADERS)
        detect_url = f"{self.base}/services/aigc/image2video/face-detect"
        body = {"model": "emo-detect-v1", "input": {"image_url": detect_image}}
        detected = (await self.request("detect", "POST", detect_url, json=body, headers=headers))[
            "output"
        ]
        if not detected.get("check_pass"):
            raise ArmError(f"detection: {detected}")
        inputs = {"image_url": image, "audio_url": audio}
        inputs |= {"face_bbox": detected["face_bbox"], "ext_bbox": detected["ext_bbox"]}
        submit_url = f"{self.base}/services/aigc/image2video/video-synthesis"
        headers["X-DashScope-Async"] = "enable"
        body = {"model": "emo-v1", "input": inputs, "parameters": {"style_level": "normal"}}
        submitted = await self.request("submit", "POST", submit_url, json=body, headers=headers)
        task_id = submitted["output"]["task_id"]
        delay = 1.0
        while True:
            await asyncio.sleep(delay / self.speed)
            delay = min(delay * 2, 30.0)
            url = f"{self.base}/tasks/{task_id}"
            output = (await self.request("query", "GET", url, headers=self.auth))["output"]
            if output["task_status"] == "SUCCEEDED":
                break
            if output["task_status"] in ("FAILED", "CANCELED", "UNKNOWN"):
                raise ArmError(f"task {task_id}: {output['task_status']}")
        path = Path(self.spec["out"]) / f"v{index}.mp4"
        video = output.get("results", {}).get("video_url") or output["video_url"]
        await _download(self.session, video, path)
        return {"task_id": task_id, "path": str(path)}


async def _plain(spec: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    videos, errors = VIDEOS, ERRORS
    async with aiohttp.ClientSession() as session:
        client = Plain(spec, session)

        async def one(index: int) -> None:
            try:
                videos[str(index)] = await client.job(index)
            except Exception as exc:
                errors.append(f"job {index}: {type(exc).__name__}: {exc}")

        await asyncio.gather(*(one(i) for i in range(len(spec["jobs"]))))
    return {"videos": videos, "errors": errors}


def _preload(arm: str) -> None:
    """Import what the arm needs before its clock starts: start-up is measured elsewhere."""
    if arm == "batch":
        import emoclient._batch  # noqa: F401
        from emoclient import Batch, EmoClient  # noqa: F401
    elif arm == "aiohttp":
        import aiohttp
        import aiolimiter  # noqa: F401
    else:
        import aiohttp  # noqa: F401
        import dashscope.aigc.video_synthesis
        import dashscope.utils.oss_utils  # noqa: F401


async def _run(spec: dict[str, Any]) -> dict[str, Any]:
    arm = spec["arm"]
    if arm == "batch":
        return await _batch(spec)
    if arm in ("sdk-sequential", "sdk-gathered"):
        return await _sdk(spec, gathered=arm == "sdk-gathered")
    if arm == "aiohttp":
        return await _plain(spec)
    raise SystemExit(f"unknown arm {arm!r}; one of batch, sdk-sequential, sdk-gathered, aiohttp")


def _peak_rss_kib() -> int:
    """This process's peak RSS (VmHWM: ru_maxrss would count the parent's, from before exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit("usage: makespan_arm.py SPEC.json RESULT.json")
    spec = json.loads(Path(sys.argv[1]).read_text())
    Path(spec["out"]).mkdir(parents=True, exist_ok=True)
    _preload(spec["arm"])
    started = time.time()
    try:
        result = asyncio.run(asyncio.wait_for(_run(spec), spec["deadline"]))
        result["timed_out"] = False
    except TimeoutError:
        ERRORS.append(f"the arm's deadline ({spec['deadline']:.0f} s) passed")
        result = {"videos": VIDEOS, "errors": ERRORS, "timed_out": True}
    result["started"] = started
    result["ended"] = time.time()
    result["peak_rss_kib"] = _peak_rss_kib()
    Path(sys.argv[2]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
