"""Quick start: one EMO video and one Emoji video through EmoClient.

Start the local emulator in another terminal (fast clock, so a task takes seconds):

    emoclient emulator --port 8089 --speed 50

then run, with the environment the client reads:

    DASHSCOPE_API_KEY=sk-demo DASHSCOPE_HTTP_BASE_URL=http://127.0.0.1:8089/api/v1 \\
        python examples/quickstart.py [PORTRAIT [SPEECH]]

Without arguments it draws a sample portrait and speech track (needs the ``emulator`` extra).
Against the real service, drop DASHSCOPE_HTTP_BASE_URL and use a Beijing-region key.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

from emoclient import DetectionFailedError, DrivenId, EmoClient, TaskFailedError

OUT = Path("quickstart-out")


def sample_inputs() -> tuple[Path, Path]:
    from emoclient.emulator.samples import make_portrait, make_speech

    OUT.mkdir(exist_ok=True)
    return make_portrait(OUT / "portrait.jpg", fmt="jpg"), make_speech(OUT / "speech.wav")


async def main(portrait: Path, speech: Path) -> None:
    async with EmoClient() as client:
        # Step by step: upload for the detect model, check the portrait, look at the boxes.
        uploaded = await client.upload(portrait, model="emo-detect-v1")
        detection = await client.detect_emo(uploaded.url, ratio="1:1")
        print(f"detect: passed={detection.passed} face={detection.face_bbox}")

        # One call each: upload, detect, submit, wait and download.
        try:
            emo = await client.generate_emo(portrait, speech, out=OUT / "emo.mp4")
            emoji = await client.generate_emoji(
                portrait, DrivenId.MENGWA_KAIXIN, out=OUT / "emoji.mp4"
            )
        except (DetectionFailedError, TaskFailedError) as exc:
            print(f"no video: {exc}")
            return
        print(f"saved {emo} and {emoji}")


if __name__ == "__main__":
    inputs = [Path(a) for a in sys.argv[1:3]]
    if len(inputs) < 2:
        inputs = list(sample_inputs())
    anyio.run(main, inputs[0], inputs[1])
