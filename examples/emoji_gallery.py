"""One face, every Emoji template: a gallery page of expression videos.

    python examples/emoji_gallery.py [PORTRAIT] [--templates ID,ID,...]

Renders the portrait with each of the 20 Emoji templates (``DrivenId``), or with those
``--templates`` names, into ``emoji-gallery/`` and writes ``emoji-gallery/index.html``: open
it in a browser. Emoji allows one submit a second and renders one video at a time per
account, so the batch keeps that pace for you (20 templates take at least 20 s). Without a
PORTRAIT it draws a sample one (needs the ``emulator`` extra). It reads DASHSCOPE_API_KEY and
DASHSCOPE_HTTP_BASE_URL.
"""

from __future__ import annotations

import argparse
import html
from pathlib import Path

import anyio

from emoclient import Batch, DrivenId, EmoClient, EmojiJob, JobResult

OUT = Path("emoji-gallery")
PAGE = """<!doctype html>
<meta charset="utf-8">
<title>Emoji gallery</title>
<style>
  body {{ font-family: system-ui, sans-serif; margin: 2rem; background: #f4f6fa; }}
  main {{ display: grid; grid-template-columns: repeat(auto-fill, 200px); gap: 1rem; }}
  figure {{ margin: 0; background: #fff; padding: 0.5rem; border-radius: 8px; }}
  video {{ width: 100%; border-radius: 4px; }}
  figcaption {{ font-size: 0.85rem; text-align: center; }}
</style>
<h1>{title}</h1>
<main>
{cells}
</main>
"""


async def render(portrait: Path, templates: list[DrivenId]) -> list[JobResult]:
    # One job per template; the output is named after the template.
    jobs = [EmojiJob(image=portrait, driven_id=t, output=f"{t}.mp4", label=t) for t in templates]
    async with EmoClient() as client, Batch(client, out_dir=OUT) as batch:
        # Detection runs once for the portrait (the batch caches it), not once per template.
        return [result async for result in batch.run(jobs)]


def gallery(portrait: Path, results: list[JobResult]) -> str:
    cells = []
    for result in sorted(results, key=lambda r: str(r.job.label)):
        label = html.escape(str(result.job.label))
        if result.path is not None:
            video = f'<video src="{result.path.name}" autoplay loop muted playsinline></video>'
        else:
            video = f"<p>no video: {html.escape(result.error or result.status)}</p>"
        cells.append(f"<figure>{video}<figcaption>{label}</figcaption></figure>")
    return PAGE.format(title=html.escape(f"{portrait.name}: Emoji"), cells="\n".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("portrait", nargs="?", type=Path)
    parser.add_argument("--templates", help="comma-separated driven_id values (default: all)")
    args = parser.parse_args()
    templates = (
        [DrivenId(t) for t in args.templates.split(",")] if args.templates else list(DrivenId)
    )
    portrait = args.portrait or sample_portrait()
    results = anyio.run(render, portrait, templates)
    (OUT / "index.html").write_text(gallery(portrait, results), encoding="utf-8")
    made = sum(result.path is not None for result in results)
    print(f"{made} of {len(templates)} videos; open {OUT / 'index.html'} in a browser")


def sample_portrait() -> Path:
    from emoclient.emulator.samples import make_portrait

    OUT.mkdir(exist_ok=True)
    return make_portrait(OUT / "face.png")


if __name__ == "__main__":
    main()
