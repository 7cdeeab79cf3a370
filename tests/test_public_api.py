"""The public face of ``emoclient``: what ``__all__`` promises is importable and documented."""

from __future__ import annotations

import inspect

import pytest

import emoclient

CLIENT_NAMES = {
    "EmoClient",
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
    "Rates",
    "LimitRegistry",
    "LimitsBackend",
    "InMemoryLimitsBackend",
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
