"""Faults, statistics and the admin routes (loopback only), plus the command's flags."""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from emulator_http import Api, emo_body, mask

from emoclient._cli import _emulator as cli
from emoclient.emulator import EmulatorConfig, RunningEmulator, account_label
from emoclient.emulator._admin import is_loopback, loopback_only


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig.fast(speed=0.0, faults={"seed": 7})


@pytest.fixture
async def api(emulator: RunningEmulator) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, emulator, "sk-admin")


async def _admin(api: Api, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    url = f"{api.emulator.root_url}/_emulator/{path}"
    async with api.session.request(method, url, json=body) as response:
        return response.status, await response.json()


async def test_error_rate_answers_500_or_503_in_the_envelope(api: Api) -> None:
    api.emulator.set_faults(error_rate={"task_get": 1.0})
    seen = set()
    for _ in range(12):
        reply = await api.task("1111")
        seen.add((reply.status, reply.body["code"]))
        assert set(reply.body) == {"request_id", "code", "message"}
    assert seen == {(500, "InternalError"), (503, "ModelUnavailable")}
    assert (await api.call("GET", "/tasks")).status == 200  # other routes unaffected


async def test_dropped_submit_creates_no_task(api: Api) -> None:
    api.emulator.set_faults(drop_rate={"submit": 1.0})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.submit(emo_body(api.emulator))
    account = next(iter((await api.emulator.stats())["accounts"].values()))
    assert account["submissions"] == 0
    assert account["routes"]["submit"]["requests"] == 1


async def test_answer_lost_after_submit_still_creates_the_task(api: Api) -> None:
    api.emulator.set_faults(drop_after_rate={"submit": 1.0})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.submit(emo_body(api.emulator))
    api.emulator.set_faults(drop_after_rate=0.0)
    listed = await api.call("GET", "/tasks")
    assert listed.body["total"] == 1


async def test_stalled_task_stays_running(api: Api) -> None:
    api.emulator.set_faults(stall_rate=1.0)
    task_id = (await api.submit(emo_body(api.emulator))).body["output"]["task_id"]
    api.emulator.advance(20 * 3600)
    assert (await api.task(task_id)).body["output"]["task_status"] == "RUNNING"


async def test_faults_change_at_run_time_over_http(api: Api) -> None:
    status, body = await _admin(api, "POST", "faults", {"error_rate": 1.0})
    assert status == 200
    assert body["error_rate"] == 1.0
    assert (await api.task("1111")).status in (500, 503)
    status, _ = await _admin(api, "POST", "faults", {"error_rate": 0.0})
    assert (await api.task("1111")).status == 200
    status, body = await _admin(api, "POST", "faults", {"no_such_fault": 1})
    assert status == 400
    assert "Invalid fault settings" in body["message"]


@pytest.mark.parametrize(
    "change",
    [
        {"latency": float("inf")},
        {"latency": -1},
        {"error_rate": 2},
        {"drop_rate": {"submit": float("nan")}},
        {"stall_rate": -0.5},
        {"download_cut_bytes": -1},
    ],
)
async def test_nonsense_fault_settings_are_refused(api: Api, change: dict[str, Any]) -> None:
    before = api.emulator.state.faults
    status, body = await _admin(api, "POST", "faults", change)
    assert status == 400
    assert "Invalid fault settings" in body["message"]
    assert api.emulator.state.faults == before


async def test_clock_advance_over_http(api: Api) -> None:
    before = api.emulator.now()
    status, body = await _admin(api, "POST", "clock/advance", {"seconds": 90})
    assert status == 200
    assert body["virtual_time"] == pytest.approx(before + 90)
    status, _ = await _admin(api, "POST", "clock/advance", {"seconds": -1})
    assert status == 400
    for number in (float("nan"), float("inf")):
        status, _ = await _admin(api, "POST", "clock/advance", {"seconds": number})
        assert status == 400
        status, _ = await _admin(api, "POST", "clock/speed", {"speed": number})
        assert status == 400
    assert api.emulator.now() == pytest.approx(before + 90)


async def test_clock_speed_over_http(api: Api) -> None:
    status, body = await _admin(api, "POST", "clock/speed", {"speed": 0})
    assert (status, body["speed"]) == (200, 0.0)
    frozen = api.emulator.now()
    assert api.emulator.now() == frozen
    status, _ = await _admin(api, "POST", "clock/speed", {"speed": "fast"})
    assert status == 400
    api.emulator.set_speed(10.0)
    assert api.emulator.state.clock.speed == 10.0


async def test_stats_document(api: Api) -> None:
    await api.submit(emo_body(api.emulator))
    await api.task("1111")
    status, over_http = await _admin(api, "GET", "stats")
    assert status == 200
    assert over_http == await api.emulator.stats()
    label = "acct-" + hashlib.sha256(b"sk-admin").hexdigest()[:8]
    assert "sk-admin" not in json.dumps(over_http)
    slot = {
        "submissions": 1,
        "tasks": {"RUNNING": 1},
        "slot_busy_seconds": 0.0,
        "slot_span_seconds": 0.0,
        "max_in_flight": 1,
        "max_running": 1,
    }
    assert mask(over_http["accounts"][label]) == {
        "routes": {
            "submit": {"requests": 1, "throttled": 0, "max_in_1s": 1},
            "task_get": {"requests": 1, "throttled": 0, "max_in_1s": 1},
        },
        "models": {
            "emo-v1": {
                "routes": {"submit": {"requests": 1, "throttled": 0, "max_in_1s": 1}},
                **slot,
            }
        },
        **slot,
        "result_bytes_served": 0,
    }
    api.emulator.advance(10)
    account = (await api.emulator.stats())["accounts"][label]
    assert account["slot_busy_seconds"] == account["slot_span_seconds"] == 10.0


async def test_reset_forgets_everything(api: Api) -> None:
    task_id = (await api.submit(emo_body(api.emulator))).body["output"]["task_id"]
    status, _ = await _admin(api, "POST", "reset")
    assert status == 200
    assert (await api.emulator.stats())["accounts"] == {}
    assert (await api.task(task_id)).body["output"]["task_status"] == "UNKNOWN"


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("192.0.2.7", False),
        ("2001:db8::1", False),
        (None, False),
        ("not-an-ip", False),
    ],
)
def test_is_loopback(remote: str | None, expected: bool) -> None:
    assert is_loopback(remote) is expected


class _Peer:
    """A transport whose peer is ``address`` (a forged remote end)."""

    def __init__(self, address: str) -> None:
        self._address = address

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return (self._address, 40000) if name == "peername" else default


@pytest.mark.parametrize(("peer", "status"), [("203.0.113.9", 403), ("127.0.0.1", 200)])
async def test_admin_routes_refuse_a_remote_peer(peer: str, status: int) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    request = make_mocked_request("GET", "/_emulator/stats", transport=_Peer(peer))
    response = await loopback_only(request, handler)
    assert response.status == status


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    return parser.parse_args(["emulator", *argv])


def test_command_flags_make_the_config() -> None:
    args = _parse(
        "--api-key", "k1", "--api-key", "k2", "--speed", "60", "--error-rate", "0.1",
        "--drop-rate", "0.05", "--latency", "0.2", "--task-failure-rate", "0.3",
        "--stall-rate", "0.01", "--download-cut-bytes", "1000", "--no-render",
    )  # fmt: skip
    config = cli.config_from_args(args)
    assert config.api_keys == frozenset({"k1", "k2"})
    assert config.speed == 60
    assert config.render is False
    faults = config.faults
    assert (faults.error_rate, faults.drop_rate, faults.latency) == (0.1, 0.05, 0.2)
    assert (faults.task_failure_rate, faults.stall_rate) == (0.3, 0.01)
    assert faults.download_cut_bytes == 1000
    assert args.port == 8089
    assert cli.config_from_args(_parse()).api_keys is None


def test_api_key_flags_group_keys_into_accounts() -> None:
    args = _parse("--api-key", "sk-1=team", "--api-key", "sk-2=team", "--api-key", "sk-3")
    config = cli.config_from_args(args)
    assert config.api_keys == {"sk-1": "team", "sk-2": "team", "sk-3": "sk-3"}
    assert [config.account_of(k) for k in ("sk-1", "sk-2", "sk-3", "sk-4")] == [
        "team",
        "team",
        account_label("sk-3"),
        None,
    ]
    again = cli.config_from_args(_parse("--api-key", "sk-1=team", "--api-key", "sk-1=team"))
    assert again.api_keys == {"sk-1": "team"}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["=team"], "expected KEY or KEY=ACCOUNT; the KEY is empty"),
        ([""], "expected KEY or KEY=ACCOUNT; the KEY is empty"),
        (["sk-secret="], "expected KEY=ACCOUNT with an account name after '='; it is empty"),
        (["sk-secret=a", "sk-secret=b"], "one KEY is given for two different accounts"),
        (["sk-secret", "sk-secret=b"], "one KEY is given for two different accounts"),
        (["sk-secret", "sk-other=sk-secret"], "an account name must not be another API key"),
        (["sk-other=sk-secret", "sk-secret"], "an account name must not be another API key"),
        (["sk-secret=acct-0123abcd"], "account name 'acct-0123abcd' looks like the label of a key"),
    ],
)
def test_bad_api_key_flags_are_usage_errors_that_never_show_the_key(
    values: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [arg for value in values for arg in ("--api-key", value)]
    with pytest.raises(SystemExit) as exit_info:
        _parse(*argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --api-key: {expected}" in err
    assert "sk-secret" not in err


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--port", "99999", "a port number 0-65535 (0 picks a free one)"),
        ("--files-port", "-5", "a port number 0-65535 (0 picks a free one)"),
        ("--port", "http", "a port number 0-65535 (0 picks a free one)"),
        ("--speed", "-1", "a number >= 0"),
        ("--processing-base", "nan", "a number >= 0"),
        ("--latency", "-0.5", "a number >= 0"),
        ("--error-rate", "2", "a probability from 0 to 1"),
        ("--stall-rate", "-0.1", "a probability from 0 to 1"),
        ("--download-cut-bytes", "-1", "a whole number of bytes >= 0"),
    ],
)
def test_bad_flag_values_are_usage_errors(
    flag: str, value: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse(flag, value)
    assert exit_info.value.code == 2
    assert f"argument {flag}: expected {expected}, not {value!r}" in capsys.readouterr().err


def test_a_busy_port_is_a_message_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.run(_parse("--port", str(port), "--no-render")) == 1
    captured = capsys.readouterr()
    assert f"cannot listen on 127.0.0.1:{port}" in captured.err
    assert "Pick another --port" in captured.err
    assert captured.out == ""


@pytest.mark.parametrize(("signum", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
async def test_the_command_serves_until_stopped(signum: str, code: int) -> None:
    import signal
    import sys

    command = [sys.executable, "-m", "emoclient.emulator", "--port", "0", "--no-render"]
    async with await anyio.open_process(command) as process:
        try:
            assert process.stdout is not None
            first_line = b""
            async for chunk in process.stdout:
                first_line += chunk
                if b"\n" in first_line:
                    break
            base_url = first_line.decode().split("API at ")[1].split()[0]
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{base_url}/tasks/1111", headers={"Authorization": "Bearer k"}) as r,
            ):
                body = await r.json()
            process.send_signal(getattr(signal, signum))
            with anyio.fail_after(30):  # a deadline, not a synchronisation
                assert await process.wait() == code
        finally:
            if process.returncode is None:
                process.kill()
    assert body["output"]["task_status"] == "UNKNOWN"
