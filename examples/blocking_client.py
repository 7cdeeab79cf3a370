"""The client from code that is not async: a script, a notebook, a Django or Flask view.

    python examples/blocking_client.py [PORTRAIT SPEECH]

``BlockingEmoClient`` has every method of ``EmoClient``, blocking: it runs the async client
on an event loop of its own, in a background thread. (Inside async code, use ``EmoClient``:
a blocking call would stall the event loop.) Without arguments it draws a sample portrait
and speech (needs the ``emulator`` extra). It reads DASHSCOPE_API_KEY and
DASHSCOPE_HTTP_BASE_URL.
"""

from __future__ import annotations

import sys
from pathlib import Path

from emoclient import BlockingEmoClient, TaskFailedError

OUT = Path("blocking-out")


def sample_inputs() -> tuple[Path, Path]:
    from emoclient.emulator.samples import make_portrait, make_speech

    OUT.mkdir(exist_ok=True)
    return make_portrait(OUT / "portrait.jpg", fmt="jpg"), make_speech(OUT / "speech.wav")


def main(portrait: Path, speech: Path) -> None:
    with BlockingEmoClient() as client:
        # One call: upload, detect, submit, wait and download, as EmoClient.generate_emo.
        try:
            video = client.generate_emo(portrait, speech, out=OUT / "talking.mp4")
        except TaskFailedError as exc:
            print(f"no video: {exc}")
            return
        print(f"saved {video}")


if __name__ == "__main__":
    if len(sys.argv) >= 3:
        main(Path(sys.argv[1]), Path(sys.argv[2]))
    else:
        main(*sample_inputs())
