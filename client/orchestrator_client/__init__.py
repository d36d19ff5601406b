"""Python client SDK of the orchestrator: a replica-aware gRPC client and a task worker.

Imports only grpcio, protobuf and the standard library.
"""

from orchestrator_client._credentials import (
    channel_credentials,
    read_token_file,
    tls_credentials,
)
from orchestrator_client._streams import Consumer, Delivery, StreamGapError, Subscription
from orchestrator_client.client import (
    BulkResult,
    OrchestratorClient,
    Recorder,
    SearchPage,
    Task,
    Workflow,
)
from orchestrator_client.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    OrchestratorError,
    ResourceExhaustedError,
    UnavailableError,
)
from orchestrator_client.worker import Handler, TaskContext, TaskFailure, Worker, WorkerStats

__version__ = "0.1.0"

__all__ = [
    "AlreadyExistsError",
    "BulkResult",
    "Consumer",
    "Delivery",
    "FailedPreconditionError",
    "Handler",
    "InvalidArgumentError",
    "NotFoundError",
    "OrchestratorClient",
    "OrchestratorError",
    "Recorder",
    "ResourceExhaustedError",
    "SearchPage",
    "StreamGapError",
    "Subscription",
    "Task",
    "TaskContext",
    "TaskFailure",
    "UnavailableError",
    "Worker",
    "WorkerStats",
    "Workflow",
    "__version__",
    "channel_credentials",
    "read_token_file",
    "tls_credentials",
]
