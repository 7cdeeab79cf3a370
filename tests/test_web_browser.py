"""examples/web_service's page in headless Chromium (Debian's, driven by Playwright).

Nothing here downloads a browser: the test uses the ``chromium`` on PATH, which
``scripts/ensure-chromium.sh`` installs (``make unit`` runs it). Without it the tests skip,
except under CI, where they fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from client_support import account_stats
from playwright.async_api import Page, async_playwright
from test_web_service import frozen_clock, post_job, running, settings_for, until

from emoclient.emulator import EmulatorConfig, RunningEmulator
from emoclient.emulator.samples import make_portrait, make_speech

DEADLINE_MS = 30_000


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    """Real H.264 MP4s, so that the browser has something to play."""
    return EmulatorConfig.fast(render=True)


@pytest.fixture
def chromium() -> str:
    """Debian's chromium, or a skip (a failure under CI) that says how to install it."""
    found = shutil.which("chromium")
    if found is None:
        message = "Debian's chromium is not on PATH; install it with scripts/ensure-chromium.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@asynccontextmanager
async def browser_page(chromium: str, url: str) -> AsyncIterator[Page]:
    """A fresh page of headless ``chromium`` at ``url``."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium,
            # The page starts the video when it is ready, long after the click.
            args=["--autoplay-policy=no-user-gesture-required"],
        )
        try:
            page = await browser.new_page(viewport={"width": 900, "height": 1100})
            page.set_default_timeout(DEADLINE_MS)
            await page.goto(url)
            yield page
        finally:
            await browser.close()


RECORD_STATES = """() => {
    window.shownStates = [];
    const state = document.getElementById("state");
    new MutationObserver(() => shownStates.push(state.textContent))
        .observe(state, {childList: true, characterData: true, subtree: true});
}"""


async def test_the_page_uploads_shows_progress_and_plays_the_video(
    emulator: RunningEmulator, tmp_path: Path, chromium: str
) -> None:
    portrait = make_portrait(tmp_path / "me.jpg", fmt="jpg")
    speech = make_speech(tmp_path / "hello.wav", seconds=2.0)
    settings = settings_for(emulator, tmp_path / "data")
    async with running("aiohttp", settings) as url, browser_page(chromium, url) as page:
        await page.evaluate(RECORD_STATES)
        await page.set_input_files("#image", portrait)
        await page.set_input_files("#audio", speech)
        await page.click("#start")
        await page.wait_for_function("document.getElementById('state').textContent === 'succeeded'")
        shown = await page.evaluate("window.shownStates")
        assert len(set(shown)) >= 2, shown  # the state moved on the page
        assert shown[-1] == "succeeded"

        # The video loads and plays: it has a length, and its clock moves.
        await page.wait_for_function(
            "(() => { const v = document.getElementById('video');"
            " return v.duration > 0 && v.currentTime > 0.3; })()"
        )
        video = await page.evaluate(
            "(() => { const v = document.getElementById('video');"
            " return {duration: v.duration, width: v.videoWidth, error: v.error}; })()"
        )
    assert video["error"] is None
    assert video["width"] == 512
    assert abs(video["duration"] - 2.0) < 0.2  # as long as the speech


async def test_leaving_the_page_cancels_a_job_not_yet_running(
    emulator: RunningEmulator, tmp_path: Path, chromium: str
) -> None:
    first = make_portrait(tmp_path / "first.png", seed=1)
    portrait = make_portrait(tmp_path / "me.png", seed=2)
    speech = make_speech(tmp_path / "hello.wav", seconds=1.0)
    settings = settings_for(emulator, tmp_path / "data")
    async with (
        running("aiohttp", settings) as url,
        aiohttp.ClientSession() as session,
        frozen_clock(emulator),
    ):
        # Another job holds the account's one running slot, so the page's job waits PENDING.
        _, answer, _ = await post_job(session, url, first, speech)
        await until(session, url, answer["id"], "running")
        async with browser_page(chromium, url) as page:
            await page.set_input_files("#image", portrait)
            await page.set_input_files("#audio", speech)
            await page.click("#start")
            await page.wait_for_function(
                "document.getElementById('state').textContent === 'submitted'"
            )
            job_id = await page.evaluate("job.id")
            await page.goto("about:blank")  # the user leaves: the page cancels its job
        await until(session, url, job_id, "canceled")
        assert account_stats(await emulator.stats())["tasks"] == {"RUNNING": 1, "CANCELED": 1}
