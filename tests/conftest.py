from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import pytest

from emoclient.emulator import EmulatorConfig, RunningEmulator, serve


def pytest_configure(config: pytest.Config) -> None:
    # The default account store is a SQLite file under EMOCLIENT_HOME (else the user's cache):
    # the tests, and the CLI processes they start, get one of their own.
    if "EMOCLIENT_HOME" not in os.environ:
        os.environ["EMOCLIENT_HOME"] = tempfile.mkdtemp(prefix="emoclient-test-home-")
    os.environ.pop("EMOCLIENT_STORE", None)
    os.environ.pop("EMOCLIENT_ACCOUNT", None)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def fast_config(**overrides: Any) -> EmulatorConfig:
    """A fast emulator config for tests (see ``EmulatorConfig.fast``)."""
    return EmulatorConfig.fast(**overrides)


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    """The config the ``emulator`` fixture uses; override this fixture to change it."""
    return fast_config()


@pytest.fixture
async def emulator(emulator_config: EmulatorConfig) -> AsyncIterator[RunningEmulator]:
    """A running emulator on 127.0.0.1 (random ports) with ``emulator_config``."""
    async with serve(emulator_config) as running:
        yield running


@pytest.fixture
async def frozen() -> AsyncIterator[RunningEmulator]:
    """An emulator whose clock moves only when told (``advance``)."""
    async with serve(EmulatorConfig.fast(speed=0.0)) as running:
        yield running
