"""Choosing the account store: spec, EMOCLIENT_STORE, the default file under EMOCLIENT_HOME."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emoclient._store import (
    MemoryStore,
    RedisStore,
    SQLiteStore,
    StoreError,
    _open,
    default_home,
    default_store_path,
    open_store,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("EMOCLIENT_STORE", "EMOCLIENT_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(_open, "_warned", set())


def test_the_default_is_a_sqlite_file_under_emoclient_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EMOCLIENT_HOME", str(tmp_path / "emo"))
    store = open_store()
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path / "emo" / "store.sqlite3"
    assert store.path.exists()


def test_home_passed_in_wins_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EMOCLIENT_HOME", str(tmp_path / "env"))
    assert default_store_path(tmp_path / "arg") == tmp_path / "arg" / "store.sqlite3"
    store = open_store(None, home=tmp_path / "arg")
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path / "arg" / "store.sqlite3"


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="the XDG layout")
def test_the_default_home_is_the_users_cache_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert default_home() == tmp_path / "home" / ".cache" / "emoclient"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_home() == tmp_path / "xdg" / "emoclient"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    assert default_home() == tmp_path / "home" / ".cache" / "emoclient"


async def test_the_default_store_is_usable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMOCLIENT_HOME", str(tmp_path / "emo"))
    store = open_store()
    try:
        assert await store.try_lease("w", size=1, holder="a", ttl=5)
    finally:
        await store.aclose()
    async with SQLiteStore(tmp_path / "emo" / "store.sqlite3") as again:
        assert await again.lease_count("w") == 1


def test_an_unwritable_home_warns_once_and_falls_back_to_memory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "a-file").write_text("")
    # Under a regular file nothing can be created, even by root.
    monkeypatch.setenv("EMOCLIENT_HOME", str(tmp_path / "a-file" / "emo"))
    with caplog.at_level(logging.WARNING, logger="emoclient"):
        assert isinstance(open_store(), MemoryStore)
        assert isinstance(open_store(), MemoryStore)
    [record] = caplog.records
    assert "a-file" in record.getMessage()
    assert "EMOCLIENT_HOME" in record.getMessage()


def test_the_environment_chooses_the_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMOCLIENT_STORE", "memory")
    assert isinstance(open_store(), MemoryStore)
    monkeypatch.setenv("EMOCLIENT_STORE", str(tmp_path / "env.sqlite3"))
    store = open_store()
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path / "env.sqlite3"
    # An explicit spec wins; an empty variable counts as unset.
    assert isinstance(open_store("memory"), MemoryStore)
    monkeypatch.setenv("EMOCLIENT_STORE", "")
    monkeypatch.setenv("EMOCLIENT_HOME", str(tmp_path / "emo"))
    assert isinstance(open_store(), SQLiteStore)


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ("sqlite:///srv/emo/store.sqlite3", "/srv/emo/store.sqlite3"),
        ("/srv/emo/store.db", "/srv/emo/store.db"),
        ("./store", "store"),
        ("shared.sqlite3", "shared.sqlite3"),
        ("~/emo.sqlite3", "HOME/emo.sqlite3"),
    ],
)
def test_sqlite_specs(spec: str, path: str, tmp_path: Path) -> None:
    store = open_store(spec)
    assert isinstance(store, SQLiteStore)
    assert store.path == Path(path.replace("HOME", str(tmp_path / "home")))


def test_a_path_object_is_a_sqlite_file(tmp_path: Path) -> None:
    store = open_store(tmp_path / "store")
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path / "store"


@pytest.mark.parametrize(
    ("spec", "shown"),
    [
        ("redis://:pw@cache:6379/1", "redis://cache:6379/1"),
        ("rediss://cache.example:6380/0", "rediss://cache.example:6380/0"),
        ("MEMORY", None),
    ],
)
def test_redis_and_memory_specs(spec: str, shown: str | None) -> None:
    store = open_store(spec)
    if shown is None:
        assert isinstance(store, MemoryStore)
    else:
        assert isinstance(store, RedisStore)
        assert store.url == shown


@pytest.mark.parametrize(
    "spec", ["memroy", "redis", "", "http://cache:6379", "sqlite://relative.db", "redis://"]
)
def test_a_bad_spec_names_itself_and_the_accepted_forms(spec: str) -> None:
    with pytest.raises(ValueError, match="unknown account store") as caught:
        open_store(spec)
    assert repr(spec) in str(caught.value)
    assert "'memory'" in str(caught.value)
    assert "redis://" in str(caught.value)


def test_a_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMOCLIENT_STORE", "memroy")
    with pytest.raises(ValueError, match="EMOCLIENT_STORE='memroy'"):
        open_store()


def test_importing_emoclient_does_not_import_redis() -> None:
    code = "import sys, emoclient, emoclient._store; sys.exit('redis' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0


def test_a_redis_spec_without_the_redis_package_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(StoreError, match=r"pip install 'emoclient\[redis\]'"):
        open_store("redis://cache:6379/0")
