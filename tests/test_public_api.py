"""The public face of ``emoclient``: what ``__all__`` promises is importable and documented."""

from __future__ import annotations

import inspect
import typing

import pytest

import emoclient

CLIENT_NAMES = {
    "EmoClient",
    "EmoClientWithRawResponse",
    "BlockingEmoClient",
    "BlockingEmoClientWithRawResponse",
    "RawResponse",
    "Timeout",
    "Detection",
    "DrivenId",
    "Model",
    "Ratio",
    "StyleLevel",
    "SubmittedTask",
    "Task",
    "TaskStatus",
    "TaskSummary",
    "UploadedFile",
    "RetryPolicy",
    "ClientActivity",
    "Rates",
    "RateLimiter",
    "AccountLimits",
    "AccountStore",
    "MemoryStore",
    "SQLiteStore",
    "RedisStore",
    "Intent",
    "StoreError",
    "StoreUnavailableError",
    "open_store",
    "EmoError",
    "TransportError",
    "ConnectError",
    "RequestTimeoutError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "RateLimitError",
    "ServerError",
    "SubmitOutcomeUnknownError",
    "DetectionFailedError",
    "TaskError",
    "TaskFailedError",
    "TaskCanceledError",
    "TaskExpiredError",
    "WaitTimeoutError",
    "DownloadError",
    "ResultURLExpiredError",
    "UploadError",
    "MissingAPIKeyError",
    "ConfigurationError",
    "InvalidResponseError",
}


def test_all_is_sorted_and_unique() -> None:
    assert list(emoclient.__all__) == sorted(set(emoclient.__all__))


def test_client_names_are_exported() -> None:
    assert set(emoclient.__all__) >= CLIENT_NAMES


@pytest.mark.parametrize("name", sorted(CLIENT_NAMES))
def test_public_symbols_resolve_and_have_docstrings(name: str) -> None:
    obj = getattr(emoclient, name)
    assert inspect.getdoc(obj), f"{name} has no docstring"


def test_every_error_roots_at_emo_error() -> None:
    errors = [getattr(emoclient, n) for n in CLIENT_NAMES if n.endswith("Error")]
    assert all(issubclass(e, emoclient.EmoError) for e in errors)
    assert issubclass(emoclient.RateLimitError, emoclient.APIStatusError)
    assert issubclass(emoclient.ResultURLExpiredError, emoclient.DownloadError)
    assert issubclass(emoclient.TaskExpiredError, emoclient.TaskError)
    assert issubclass(emoclient.MissingAPIKeyError, ValueError)


def test_public_client_methods_are_documented() -> None:
    for name, member in inspect.getmembers(emoclient.EmoClient):
        if not name.startswith("_") and callable(member):
            assert inspect.getdoc(member), f"EmoClient.{name} has no docstring"


def test_twenty_driven_ids() -> None:
    assert len(emoclient.DrivenId) == 20


EXPECTED_ALL = CLIENT_NAMES | {
    "Batch",
    "BatchBusyError",
    "BatchEvent",
    "BatchFinished",
    "BatchSummary",
    "CancelRequest",
    "DiskFullError",
    "EmoJob",
    "EmojiJob",
    "EventHandler",
    "Job",
    "JobBoard",
    "JobCanceled",
    "JobDetected",
    "JobDownloaded",
    "JobEvent",
    "JobExpired",
    "JobFailed",
    "JobHandle",
    "JobQueue",
    "JobState",
    "QueueFullError",
    "RemoteJobHandle",
    "JobPreflightFailed",
    "JobQueued",
    "JobReconciled",
    "JobResubmitted",
    "JobResult",
    "JobResumed",
    "JobStalled",
    "JobStarted",
    "JobSubmitted",
    "JobSucceeded",
    "JobUploaded",
    "JournalError",
    "Plan",
    "Problem",
    "ResultStatus",
    "SchedulerOptions",
    "__version__",
    "plan_batch",
    "preflight",
}
# Type aliases: documented where they are used, they carry no docstring of their own.
ALIASES = {"EventHandler", "Job", "ResultStatus", "__version__"}


def test_all_is_exactly_the_public_face() -> None:
    assert set(emoclient.__all__) == EXPECTED_ALL
    assert sorted(dir(emoclient)) == sorted(emoclient.__all__)


@pytest.mark.parametrize("name", sorted(EXPECTED_ALL - CLIENT_NAMES - ALIASES))
def test_batch_symbols_resolve_and_have_docstrings(name: str) -> None:
    obj = getattr(emoclient, name)
    assert inspect.getdoc(obj), f"{name} has no docstring"


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        emoclient.Nope  # noqa: B018


def _classes_in(hint: object) -> set[type]:
    found: set[type] = set()
    if isinstance(hint, type):
        found.add(hint)
    for arg in typing.get_args(hint):
        found |= _classes_in(arg)
    return found


def _signature_classes(obj: object) -> set[type]:
    """Every class named by the annotations of ``obj``'s public callables and fields."""
    found: set[type] = set()
    members = [obj]
    if isinstance(obj, type):
        members += [
            m
            for n, m in vars(obj).items()
            if (not n.startswith("_") or n == "__init__") and callable(m)
        ]
        members += [m.fget for m in vars(obj).values() if isinstance(m, property)]
    for member in members:
        try:
            hints = typing.get_type_hints(member)
        except (NameError, TypeError):  # a builtin or a class without annotations
            continue
        for hint in hints.values():
            found |= _classes_in(hint)
    return found


def test_every_type_in_a_public_signature_is_exported() -> None:
    exported = {getattr(emoclient, n) for n in emoclient.__all__ if n not in ALIASES}
    missing = set()
    for name in emoclient.__all__:
        if name in ALIASES:
            continue
        for cls in _signature_classes(getattr(emoclient, name)):
            if cls.__module__.startswith("emoclient") and cls not in exported:
                missing.add(f"{cls.__module__}.{cls.__qualname__} (in {name})")
    assert not missing, sorted(missing)
