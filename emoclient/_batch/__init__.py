"""The batch half: many jobs in, finished videos out, inside one account's limits.

Modules, top to bottom (each imports only those below it):

- ``queue``: :class:`JobQueue`, a long-lived batch for apps; ``board``: the account's job
  board, through which every queue of an account answers about every job
  (:class:`RemoteJobHandle`); ``handles``: :class:`JobHandle` and :class:`JobState`;
- ``batch``: :class:`Batch`, the runner a manifest row enters and its result leaves;
- ``scheduler``: admission window, the budgeted poller, stop/cancel;
- ``download_lane``: finished videos fetched earliest URL expiry first; ``verify``: a
  downloaded video checked against its job;
- ``submit``: exactly-once submission and reconciliation of lost answers;
- ``prepare``: preflight, detection (cached) and uploads before a submit;
- ``ledger``: every job transition: journal row, progress event and result together;
- ``journal``: durable per-job state in SQLite;
- ``run_lock``: one batch per output folder and journal;
- ``manifest``: CSV/JSONL rows into jobs; ``checks``: preflight (local checks) and the
  cost plan;
- ``probe``: image and audio headers read without decoding; ``jobs``: the job types and
  their content keys; ``events``: the typed progress events.
"""

from emoclient._batch.batch import JOURNAL_NAME, Batch
from emoclient._batch.board import CancelRequest, JobBoard, RemoteJobHandle
from emoclient._batch.checks import Plan, Problem, plan_batch, preflight
from emoclient._batch.events import (
    BatchEvent,
    BatchFinished,
    JobCanceled,
    JobDetected,
    JobDownloaded,
    JobEvent,
    JobExpired,
    JobFailed,
    JobPreflightFailed,
    JobQueued,
    JobReconciled,
    JobResubmitted,
    JobResumed,
    JobStalled,
    JobStarted,
    JobSubmitted,
    JobSucceeded,
    JobUploaded,
)
from emoclient._batch.handles import JobHandle, JobState
from emoclient._batch.jobs import EmojiJob, EmoJob, Job
from emoclient._batch.ledger import BatchSummary, JobResult, ResultStatus
from emoclient._batch.options import SchedulerOptions
from emoclient._batch.queue import JobQueue, QueueFullError

__all__ = [
    "JOURNAL_NAME",
    "Batch",
    "BatchEvent",
    "BatchFinished",
    "BatchSummary",
    "CancelRequest",
    "EmoJob",
    "EmojiJob",
    "Job",
    "JobBoard",
    "JobCanceled",
    "JobDetected",
    "JobDownloaded",
    "JobEvent",
    "JobExpired",
    "JobFailed",
    "JobHandle",
    "JobPreflightFailed",
    "JobQueue",
    "JobQueued",
    "JobReconciled",
    "JobResubmitted",
    "JobResult",
    "JobResumed",
    "JobStalled",
    "JobStarted",
    "JobState",
    "JobSubmitted",
    "JobSucceeded",
    "JobUploaded",
    "Plan",
    "Problem",
    "QueueFullError",
    "RemoteJobHandle",
    "ResultStatus",
    "SchedulerOptions",
    "plan_batch",
    "preflight",
]
