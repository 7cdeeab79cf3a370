"""``emoclient emulator``: run the local emulator of the DashScope EMO/Emoji service."""

from __future__ import annotations

import argparse
import math
import signal
import sys
from collections.abc import Callable
from typing import Any


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``emulator`` command."""
    parser = subparsers.add_parser(
        "emulator",
        help="run the local emulator of the service",
        description=(
            "Serve the DashScope EMO/Emoji protocol on this machine. Point a client at the "
            "printed base URL (DASHSCOPE_HTTP_BASE_URL). Any non-empty API key is its own "
            "account unless --api-key restricts the accepted keys (and groups them into "
            "accounts: the service's limits belong to the account behind a key)."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=_port, default=8089, help="API port (0: any free port)")
    parser.add_argument(
        "--files-port", type=_port, default=0, help="port of the upload/result host (0: any)"
    )
    parser.add_argument(
        "--api-key",
        action=_ApiKeys,
        dest="api_keys",
        metavar="KEY[=ACCOUNT]",
        help=(
            "accept KEY (repeatable; others are refused). Keys given the same ACCOUNT share "
            "its limits, running slots and tasks; a KEY alone is an account of its own"
        ),
    )
    parser.add_argument(
        "--speed", type=_at_least_zero, default=1.0, help="virtual seconds per real second"
    )
    parser.add_argument(
        "--processing-base", type=_at_least_zero, default=30.0, help="virtual seconds per task"
    )
    parser.add_argument(
        "--processing-per-second",
        type=_at_least_zero,
        default=5.0,
        help="extra virtual seconds per second of output video",
    )
    parser.add_argument("--no-render", action="store_true", help="serve placeholder bytes")
    parser.add_argument(
        "--content-errors",
        choices=("task", "submit"),
        default="task",
        help="report image content problems as FAILED tasks or as HTTP 400 at submit",
    )
    _add_fault_flags(parser)
    parser.set_defaults(func=run)


def _add_fault_flags(parser: argparse.ArgumentParser) -> None:
    faults = parser.add_argument_group("faults (changeable later: POST /_emulator/faults)")
    rates = {
        "--error-rate": "probability of 500/503 answers",
        "--drop-rate": "probability of closing the connection without an answer",
        "--drop-after-rate": "probability of losing the answer after the request took effect",
        "--task-failure-rate": "probability that a task ends FAILED",
        "--stall-rate": "probability that a task stays RUNNING forever",
    }
    for flag, text in rates.items():
        faults.add_argument(flag, type=_probability, default=0.0, help=text)
    faults.add_argument(
        "--latency", type=_at_least_zero, default=0.0, help="seconds added per answer"
    )
    faults.add_argument(
        "--download-cut-bytes",
        type=_byte_count,
        default=None,
        help="cut result downloads after N bytes",
    )
    faults.add_argument("--seed", type=int, default=None, help="seed of the fault generator")


class _ApiKeys(argparse.Action):
    """Collects ``--api-key KEY[=ACCOUNT]`` into ``{key: account}`` (a lone key: itself)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        from emoclient.emulator._accounts import check_accounts

        key, equals, account = str(values).partition("=")
        # The messages never repeat the value: it holds an API key.
        if not key:
            raise argparse.ArgumentError(self, "expected KEY or KEY=ACCOUNT; the KEY is empty")
        if equals and not account:
            raise argparse.ArgumentError(
                self, "expected KEY=ACCOUNT with an account name after '='; it is empty"
            )
        keys: dict[str, str] = dict(getattr(namespace, self.dest) or {})
        if keys.setdefault(key, account or key) != (account or key):
            raise argparse.ArgumentError(self, "one KEY is given for two different accounts")
        try:
            check_accounts(keys)
        except ValueError as exc:
            raise argparse.ArgumentError(self, str(exc)) from exc
        setattr(namespace, self.dest, keys)


def _checked(
    convert: Callable[[str], Any], valid: Callable[[Any], bool], expected: str
) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not valid(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, not {text!r}")
        return value

    return parse


_port = _checked(int, lambda v: 0 <= v <= 65535, "a port number 0-65535 (0 picks a free one)")
_at_least_zero = _checked(float, lambda v: 0 <= v < math.inf, "a number >= 0")
_probability = _checked(float, lambda v: 0 <= v <= 1, "a probability from 0 to 1")
_byte_count = _checked(int, lambda v: v >= 0, "a whole number of bytes >= 0")


def config_from_args(args: argparse.Namespace) -> Any:
    """The ``EmulatorConfig`` the command-line flags describe."""
    from emoclient.emulator import EmulatorConfig, Faults

    faults = Faults(
        error_rate=args.error_rate,
        drop_rate=args.drop_rate,
        drop_after_rate=args.drop_after_rate,
        latency=args.latency,
        task_failure_rate=args.task_failure_rate,
        stall_rate=args.stall_rate,
        download_cut_bytes=args.download_cut_bytes,
        seed=args.seed,
    )
    keys: dict[str, str] | None = args.api_keys
    api_keys: frozenset[str] | dict[str, str] | None = keys
    if keys and all(key == account for key, account in keys.items()):
        api_keys = frozenset(keys)  # every key its own account: the plain set
    return EmulatorConfig(
        api_keys=api_keys,
        speed=args.speed,
        processing_base_seconds=args.processing_base,
        processing_per_output_second=args.processing_per_second,
        render=not args.no_render,
        content_errors=args.content_errors,
        faults=faults,
    )


async def _serve_until_signalled(args: argparse.Namespace) -> int:
    import anyio

    from emoclient.emulator import serve

    config = config_from_args(args)
    # Handlers of our own, not KeyboardInterrupt: a shell starts background jobs with SIGINT
    # ignored, and a service manager stops servers with SIGTERM.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with serve(config, host=args.host, port=args.port, files_port=args.files_port) as emu:
            print(f"emoclient emulator: API at {emu.base_url}", flush=True)
            print(f"  upload and result host: {emu.files_url}", flush=True)
            print(f"  stats: {emu.root_url}/_emulator/stats", flush=True)
            print(f"  use it: export DASHSCOPE_HTTP_BASE_URL={emu.base_url}", flush=True)
            print("  (Ctrl-C stops it)", flush=True)
            async for signum in signals:
                return 128 + int(signum)  # the shell's convention: 130 SIGINT, 143 SIGTERM
    return 0  # pragma: no cover - the receiver never ends by itself


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT (Ctrl-C) or SIGTERM; return the shell's exit code for it."""
    missing = missing_extra()
    if missing is not None:
        print(
            f"emoclient emulator: it renders videos with PyAV, Pillow and numpy ({missing} is "
            "missing); install the extra: pip install 'emoclient[emulator]'",
            file=sys.stderr,
        )
        return 2
    import anyio

    try:
        return anyio.run(_serve_until_signalled, args)
    except OSError as exc:
        print(
            f"emoclient emulator: cannot listen on {args.host}:{args.port}: {exc}. "
            "Pick another --port (0 picks a free one).",
            file=sys.stderr,
        )
        return 1


def missing_extra() -> str | None:
    """The first package of the ``emulator`` extra that cannot be found, if any."""
    from importlib.util import find_spec

    for module, name in (("av", "PyAV"), ("PIL", "Pillow"), ("numpy", "numpy")):
        if find_spec(module) is None:
            return name
    return None
