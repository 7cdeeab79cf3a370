"""Exercises the public client API under ``mypy --strict``; never collected by pytest.

If a signature drifts, this file stops type-checking. It is not executed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import emoclient
from emoclient import (
    Detection,
    DrivenId,
    EmoClient,
    Ratio,
    RetryPolicy,
    StyleLevel,
    SubmittedTask,
    Task,
    TaskStatus,
    TaskSummary,
    UploadedFile,
)


async def typed_usage() -> None:
    async with EmoClient(
        "sk-test", base_url="http://127.0.0.1:8089/api/v1", retry=RetryPolicy(max_attempts=3)
    ) as client:
        image: UploadedFile = await client.upload(Path("face.png"), model="emo-detect-v1")
        when: datetime = image.expires_at
        detection: Detection = await client.detect_emo(image.url, ratio=Ratio.PORTRAIT)
        passed: bool = detection.passed
        face: tuple[int, int, int, int] | None = detection.face_bbox
        emoji_detection: Detection = await client.detect_emoji("https://example.com/a.png")
        face_box, ext_box = detection.boxes(image="face.png")
        submitted: SubmittedTask = await client.submit_emo(
            "oss://x/a.png",
            "oss://x/a.wav",
            face_bbox=face_box,
            ext_bbox=ext_box,
            style_level=StyleLevel.ACTIVE,
        )
        emoji: SubmittedTask = await client.submit_emoji(
            "oss://x/a.png",
            driven_id=DrivenId.MENGWA_KAIXIN,
            face_bbox=[1, 2, 3, 4],
            ext_bbox=(0, 0, 10, 10),
        )
        task: Task = await client.get_task(submitted.task_id)
        status: TaskStatus = task.status
        done: bool = task.is_terminal
        duration: float | None = task.video_duration
        finished: Task = await client.wait(emoji.task_id, timeout=60.0, poll_interval=1.0)
        pages: AsyncIterator[list[TaskSummary]] = client.list_tasks(status="SUCCEEDED")
        async for page in pages:
            for row in page:
                created: datetime | None = row.created_at
                del created
        await client.cancel(submitted.task_id)
        assert finished.video_url is not None
        saved: Path = await client.download(finished.video_url, Path("out.mp4"))
        video: Path = await client.generate_emo("face.png", "voice.wav", out="a.mp4")
        clip: Path = await client.generate_emoji("face.png", "dagong_kaixin", out="b.mp4")
        del when, passed, face, emoji_detection, status, done, duration, saved, video, clip
    try:
        pass
    except emoclient.RateLimitError as exc:
        retry_after: float | None = exc.retry_after
        request_id: str | None = exc.request_id
        del retry_after, request_id
    except emoclient.TaskFailedError as exc:
        code: str | None = exc.code
        del code
    except emoclient.SubmitOutcomeUnknownError as exc:
        window: tuple[datetime, datetime] = (exc.started_at, exc.ended_at)
        del window
