"""One worker process of the account tests: ``python -m account_workers.worker '<json>'``.

The JSON names the ``mode``, the emulator's ``base_url``, the ``clients`` (``key`` and an
optional ``account``), the ``store`` spec (None: the default, ``EMOCLIENT_STORE`` else the
SQLite file under ``EMOCLIENT_HOME``) and the mode's own fields. The worker builds its
clients, prints ``"ready"``, waits for ``go`` on stdin, does its part and prints one JSON
value per line, the last one ``{"end": ...}`` (``hold`` never ends: it is killed).

Modes:

- ``emulator``: serves the emulator (``EmulatorConfig.fast(**config["emulator"])``) in this
  process, prints ``{"base_url": ..., "root_url": ...}`` and serves until the line
  ``quit`` (or the end of stdin); it needs no clients and no ``go``;
- ``generate``: every ``emo`` (``image``, ``audio``) and ``emoji`` (``image``,
  ``driven_id``) input through ``generate_emo``/``generate_emoji``, all at once; prints
  ``{"done": path}`` per video;
- ``generate_until``: ``concurrency`` loops of ``generate_emo`` over the ``emo`` inputs;
  prints ``{"done": n}`` per video; after the line ``more N`` on stdin, makes N more videos
  and stops;
- ``hold``: takes one slot of emo-v1's window (``Rates(window=1, lease_ttl=...)``), prints
  ``"held"`` and blocks;
- ``open``: for each line ``open PATH`` on stdin, opens the SQLite store ``PATH`` (its
  first call creates it) and prints ``{"opened": null}`` or ``{"opened": "<the error>"}``;
  ends at the line ``quit``;
- ``batch``: a ``Batch`` over every client into ``out_dir`` with the ``jobs`` (``kind`` emo
  or emoji, ``image``, ``audio`` or ``driven_id``, ``output``, ``label``); prints every
  event (``{"event": ...}``) and every result (``{"result": ...}``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from batch_support import options
from client_support import FAST_RETRY

from emoclient import (
    Batch,
    BatchEvent,
    EmoClient,
    EmojiJob,
    EmoJob,
    Job,
    Model,
    Rates,
    SQLiteStore,
    StoreError,
)

Config = dict[str, Any]


def say(value: Any) -> None:
    """One JSON line on stdout, flushed at once (the test is reading)."""
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


async def read_line() -> str:
    """One line of stdin ("" at its end), without blocking the event loop."""
    line: str = await anyio.to_thread.run_sync(sys.stdin.readline)
    return line.strip()


def make_clients(config: Config, rates: Rates | None = None) -> list[EmoClient]:
    """The worker's clients: fast polls for the emulator's fast clock, default limits."""
    return [
        EmoClient(
            entry["key"],
            base_url=config["base_url"],
            account=entry.get("account"),
            store=config.get("store"),
            rates=rates,
            retry=FAST_RETRY,
            poll_interval=0.02,
            max_poll_interval=0.1,
            wait_timeout=60.0,
        )
        for entry in config["clients"]
    ]


async def generate(client: EmoClient, config: Config) -> None:
    out = Path(config["out_dir"])
    videos: list[str] = []
    errors: list[str] = []

    async def one(index: int, call: dict[str, str]) -> None:
        target = out / f"video-{index}.mp4"
        try:
            if "audio" in call:
                path = await client.generate_emo(call["image"], call["audio"], out=target)
            else:
                path = await client.generate_emoji(call["image"], call["driven_id"], out=target)
        except Exception as exc:  # reported to the test, which asserts there is none
            errors.append(f"{type(exc).__name__}: {exc}")
            return
        videos.append(str(path))
        say({"done": str(path)})

    calls = [*config.get("emo", []), *config.get("emoji", [])]
    async with anyio.create_task_group() as tg:
        for index, call in enumerate(calls):
            tg.start_soon(one, index, call)
    say({"end": {"videos": videos, "errors": errors}})


async def generate_until(client: EmoClient, config: Config) -> None:
    out = Path(config["out_dir"])
    inputs: list[dict[str, str]] = config["emo"]
    done = 0
    target: int | None = None  # set by "more N"
    stop = anyio.Event()
    errors: list[str] = []

    async def listen() -> None:
        nonlocal target
        command, _, count = (await read_line()).partition(" ")
        assert command == "more", f"unknown command {command!r}"
        target = done + int(count)
        if done >= target:
            stop.set()

    async def loop(lane: int) -> None:
        nonlocal done
        turn = 0
        while not stop.is_set():
            call = inputs[(lane + turn) % len(inputs)]
            target_path = out / f"lane-{lane}-{turn}.mp4"
            turn += 1
            try:
                await client.generate_emo(call["image"], call["audio"], out=target_path)
            except Exception as exc:  # reported to the test, which asserts there is none
                errors.append(f"{type(exc).__name__}: {exc}")
                stop.set()
                return
            done += 1
            say({"done": done})
            if target is not None and done >= target:
                stop.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(listen)
        async with anyio.create_task_group() as lanes:
            for lane in range(config["concurrency"]):
                lanes.start_soon(loop, lane)
        tg.cancel_scope.cancel()  # errors end the loops before any "more"
    say({"end": {"videos": done, "errors": errors}})


async def hold(client: EmoClient, config: Config) -> None:
    async with client.limits.task_slot(Model.EMO):
        say("held")
        await anyio.sleep_forever()


async def open_stores() -> None:
    while (line := await read_line()) != "quit":
        command, _, path = line.partition(" ")
        assert command == "open", f"unknown command {command!r}"
        store = SQLiteStore(path)
        try:
            await store.lease_count("first-call")
        except StoreError as exc:
            say({"opened": str(exc)})
        else:
            say({"opened": None})
        finally:
            await store.aclose()
    say({"end": None})


def make_job(spec: dict[str, str]) -> Job:
    if spec["kind"] == "emo":
        return EmoJob(
            image=spec["image"], audio=spec["audio"], output=spec["output"], label=spec["label"]
        )
    return EmojiJob(
        image=spec["image"],
        driven_id=spec["driven_id"],
        output=spec["output"],
        label=spec["label"],
    )


async def batch(clients: list[EmoClient], config: Config) -> None:
    def show(event: BatchEvent) -> None:
        say(event.to_json())

    jobs = [make_job(spec) for spec in config["jobs"]]
    async with Batch(
        clients, out_dir=config["out_dir"], options=options(), on_event=show
    ) as running:
        async for result in running.run(jobs):
            say(
                {
                    "result": {
                        "label": result.job.label,
                        "status": result.status,
                        "path": None if result.path is None else str(result.path),
                        "task_id": result.task_id,
                        "code": result.code,
                        "error": result.error,
                    }
                }
            )
    say({"end": running.summary.counts})


async def emulator(config: Config) -> None:
    from emoclient.emulator import EmulatorConfig, serve

    async with serve(EmulatorConfig.fast(**config["emulator"])) as running:
        say({"base_url": running.base_url, "root_url": running.root_url})
        while await read_line() not in ("quit", ""):
            pass


async def main(config: Config) -> None:
    if config["mode"] == "emulator":
        await emulator(config)
        return
    rates = None
    if config["mode"] == "hold":
        rates = Rates(window=1, lease_ttl=config["lease_ttl"])
    elif "headroom" in config:
        rates = Rates(headroom=config["headroom"])
    clients = make_clients(config, rates)
    try:
        # Open the store (file, schema, connection) before the start line.
        await clients[0].limits.tasks_in_flight(Model.EMO)
        say("ready")
        assert await read_line() == "go"
        mode = config["mode"]
        if mode == "generate":
            await generate(clients[0], config)
        elif mode == "generate_until":
            await generate_until(clients[0], config)
        elif mode == "hold":
            await hold(clients[0], config)
        elif mode == "open":
            await open_stores()
        else:
            await batch(clients, config)
    finally:
        for client in clients:
            await client.aclose()


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
