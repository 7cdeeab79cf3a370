"""The emulator's state and the service operations, independent of HTTP routing."""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

import anyio

from ._clock import VirtualClock
from ._config import RATE_GROUPS, EmulatorConfig, Faults
from ._inputs import InputFetcher
from ._ratelimit import RateLimiter
from ._results import ResultSigner
from ._state import Account, Fate, RouteStats, Scheduler, Task
from ._uploads import PolicyBook, UploadStore

#: Which rate-limit group each route spends from (task queries share one budget).
LIMIT_GROUPS = {
    "detect": "detect",
    "submit": "submit",
    "task_get": "query",
    "task_list": "query",
    "task_cancel": "query",
    "upload_policy": "upload_policy",
}

#: Model families for ``upload_model_binding="family"``.
MODEL_FAMILY = {"emo-detect-v1": "emo-v1", "emoji-detect-v1": "emoji-v1"}


class EmulatorState:
    """Everything one emulator instance knows: accounts, tasks, uploads, clock and faults."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.faults: Faults = config.faults
        self.clock = VirtualClock(speed=config.speed)
        self.rng = random.Random(config.faults.seed)
        self.accounts: dict[str, Account] = {}
        self.tasks: dict[str, Task] = {}
        self.uploads = UploadStore()
        self.policies = PolicyBook()
        self.signer = ResultSigner()
        self.fetcher = InputFetcher(store=self.uploads, timeout=config.download_timeout)
        #: Base URL of the second listener (fake OSS and results), set by ``serve``.
        self.files_url: str | None = None
        self.foreign_auth_headers = 0
        self._data_dir = config.data_dir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.render_queue: list[Task] = []
        self._rendered: dict[str, anyio.Event] = {}
        #: Files served at public http URLs of the second listener (``/public/{name}``).
        self.public_files: dict[str, bytes] = {}
        self.wakeup = anyio.Event()
        self.scheduler = Scheduler(
            processing_seconds=self._processing_seconds,
            choose_fate=self._choose_fate,
            task_ttl=config.task_ttl_seconds,
            needs_render=lambda task: config.render,
            on_start=self._on_start,
        )

    @property
    def data_dir(self) -> Path:
        """Where rendered results are written (a temporary directory unless configured)."""
        if self._data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="emoclient-emulator-")
            self._data_dir = Path(self._tmp.name)
        return self._data_dir

    def close(self) -> None:
        """Remove the temporary data directory, if one was made."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def files_base(self, api_origin: str) -> str:
        """Base URL of the fake OSS / result host (the API host's ``/_oss`` without ``serve``)."""
        return self.files_url or f"{api_origin}/_oss"

    def public_url(self, name: str, api_origin: str) -> str:
        """The public http URL of hosted file ``name``."""
        return f"{self.files_base(api_origin)}/public/{name}"

    def set_faults(self, faults: Faults) -> None:
        """Replace the fault settings (a new seed restarts the random sequence)."""
        if faults.seed is not None and faults.seed != self.faults.seed:
            self.rng.seed(faults.seed)
        self.faults = faults

    def reset(self) -> None:
        """Forget every account, task and upload (the clock and faults stay)."""
        self.accounts.clear()
        self.tasks.clear()
        self.render_queue.clear()
        self.uploads = UploadStore()
        self.fetcher.store = self.uploads
        self.foreign_auth_headers = 0

    def now(self) -> float:
        """Virtual epoch seconds."""
        return self.clock.now()

    def account(self, label: str) -> Account:
        """The account called ``label``, created on first use."""
        account = self.accounts.get(label)
        if account is None:
            account = self.accounts[label] = Account(label=label)
        return account

    def count(self, account: Account, route: str, model: str | None = None) -> list[RouteStats]:
        """Count one request to ``route`` (for ``model``, if it names one) for ``account``.

        Returns the counters it went to: the account's, then the model's.
        """
        counters = [account.route(route)]
        if model is not None:
            counters.append(account.model(model).route(route))
        now = time.monotonic()
        for counter in counters:
            counter.requests += 1
            counter.peak.record(now)
        return counters

    def limiter(self, account: Account, route: str, model: str | None) -> RateLimiter | None:
        """The rate limiter a request to ``route`` for ``model`` spends from, if any."""
        group = LIMIT_GROUPS.get(route)
        limit = None if group is None else self.config.rate_limit(group, model)
        if group is None or limit is None:
            return None
        key = group if RATE_GROUPS[group] == () else f"{group}:{model}"
        limiter = account.limiters.get(key)
        if limiter is None:
            limiter = account.limiters[key] = RateLimiter(limit)
        return limiter

    def upload_model(self, model: str) -> str:
        """The model an upload for (or a call of) ``model`` is bound to."""
        if self.config.upload_model_binding == "family":
            return MODEL_FAMILY.get(model, model)
        return model

    def sync(self) -> None:
        """Replay every account's timeline up to now."""
        now = self.now()
        for account in self.accounts.values():
            self.scheduler.advance(account, now)

    def advance_clock(self, seconds: float) -> None:
        """Move the virtual clock forward and let everything due happen."""
        self.clock.advance(seconds)
        self.sync()
        self.wake()

    def set_speed(self, speed: float) -> None:
        """Run the virtual clock at ``speed`` from now on (0 freezes it)."""
        self.sync()
        self.clock.set_speed(speed)
        self.wake()

    def wake(self) -> None:
        """Wake the driver loop: something changed that may move a deadline."""
        self.wakeup.set()
        self.wakeup = anyio.Event()

    def next_due(self) -> float | None:
        """The earliest known virtual time at which some account's state changes."""
        dues = [self.scheduler.next_due(a) for a in self.accounts.values()]
        known = [d for d in dues if d is not None]
        return min(known, default=None)

    def _processing_seconds(self, task: Task) -> float:
        cfg = self.config
        return cfg.processing_base_seconds + cfg.processing_per_output_second * (
            task.inputs.output_seconds
        )

    def _choose_fate(self) -> Fate:
        roll = self.rng.random()
        if roll < self.faults.stall_rate:
            return "stall"
        if roll < self.faults.stall_rate + self.faults.task_failure_rate:
            return "fail"
        return "succeed"

    def _on_start(self, task: Task) -> None:
        self._rendered[task.task_id] = anyio.Event()
        self.render_queue.append(task)
        self.wake()

    def render_finished(self, task: Task) -> None:
        """Note that ``task``'s render ended (well or not) and let its end come due."""
        event = self._rendered.pop(task.task_id, None)
        if event is not None:
            event.set()
        self.sync()
        self.wake()

    async def wait_rendered(self, task_id: str) -> None:
        """Return once the task's result has been rendered (at once if none is under way)."""
        event = self._rendered.get(task_id)
        if event is not None:
            await event.wait()
