"""Draw the inputs that examples/manifest.csv names (needs the ``emulator`` extra).

    python examples/make_sample_inputs.py
    emoclient batch examples/manifest.csv --out examples/videos --dry-run

Portraits and speech are procedural (``emoclient.emulator.samples``), so nothing is
downloaded; against the real service, put your own portraits and recordings in their place.
"""

from __future__ import annotations

from pathlib import Path

from emoclient.emulator.samples import make_portrait, make_speech

INPUTS = Path(__file__).resolve().parent / "inputs"
PEOPLE = {"alice": 3.0, "bob": 4.5, "carol": 2.5}  # name -> seconds of speech


def main() -> None:
    INPUTS.mkdir(exist_ok=True)
    for seed, (name, seconds) in enumerate(PEOPLE.items(), start=1):
        make_portrait(INPUTS / f"{name}.png", seed=seed)
        make_speech(INPUTS / f"{name}.wav", seconds=seconds, seed=seed)
    print(f"Wrote {len(PEOPLE) * 2} files into {INPUTS}")


if __name__ == "__main__":
    main()
