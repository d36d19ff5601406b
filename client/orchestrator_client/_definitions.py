"""The definition calls of OrchestratorClient: workflow and task definitions (Conductor JSON)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator_client._codec import decode_object, encode_definition, new_request_id
from orchestrator_client._rpc import pages
from orchestrator_client._transport import Transport
from orchestrator_client.v1 import definitions_pb2


def workflow_def_request(
    definition: Mapping[str, Any] | str, overwrite: bool, request_id: str | None
) -> definitions_pb2.RegisterWorkflowDefRequest:
    """A RegisterWorkflowDefRequest (see DefinitionCalls.register_workflow_def)."""
    return definitions_pb2.RegisterWorkflowDefRequest(
        request_id=request_id or new_request_id(),
        definition_json=encode_definition(definition),
        overwrite=overwrite,
    )


def task_defs_request(
    task_defs: Sequence[Mapping[str, Any] | str], request_id: str | None
) -> definitions_pb2.RegisterTaskDefsRequest:
    """A RegisterTaskDefsRequest (see DefinitionCalls.register_task_defs)."""
    return definitions_pb2.RegisterTaskDefsRequest(
        request_id=request_id or new_request_id(),
        task_def_json=[encode_definition(d) for d in task_defs],
    )


def workflow_defs_page(
    response: definitions_pb2.ListWorkflowDefsResponse,
) -> tuple[list[dict[str, Any]], str]:
    """One page of ListWorkflowDefs: the decoded definitions (each with at least ``name`` and
    ``version``) and the next page's token (see DefinitionCalls.list_workflow_defs)."""
    out: list[dict[str, Any]] = []
    for summary in response.definitions:
        definition = decode_object(summary.definition_json)
        definition.setdefault("name", summary.name)
        definition.setdefault("version", summary.version)
        out.append(definition)
    return out, response.next_page_token


def task_defs_page(
    response: definitions_pb2.ListTaskDefsResponse,
) -> tuple[list[dict[str, Any]], str]:
    """One page of ListTaskDefs: the decoded task definitions and the next page's token."""
    return [decode_object(text) for text in response.task_def_json], response.next_page_token


class DefinitionCalls:
    """DefinitionService, as methods of OrchestratorClient."""

    _transport: Transport

    def register_workflow_def(
        self,
        definition: Mapping[str, Any] | str,
        *,
        overwrite: bool = False,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> tuple[str, int]:
        """Registers one version of a workflow definition (Conductor JSON).

        Args:
            definition: The definition as a dict, or as JSON text passed verbatim.
            overwrite: Replace an existing, different definition of the same name and version.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            The registered ``(name, version)``.

        Raises:
            InvalidArgumentError: The definition is malformed.
            AlreadyExistsError: A different definition has that name and version and
                ``overwrite`` is False.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        request = workflow_def_request(definition, overwrite, request_id)
        response = self._transport.invoke(
            request,
            definitions_pb2.RegisterWorkflowDefResponse,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return response.name, response.version

    def get_workflow_def(
        self,
        name: str,
        version: int = 0,
        *,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> dict[str, Any]:
        """Fetches one version of a workflow definition.

        Args:
            name: The definition name.
            version: The version; 0 means the latest.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            The definition as Conductor JSON decoded to a dict.

        Raises:
            NotFoundError: No such definition or version.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        request = definitions_pb2.GetWorkflowDefRequest(name=name, version=version)
        response = self._transport.invoke(
            request,
            definitions_pb2.GetWorkflowDefResponse,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return decode_object(response.definition_json)

    def list_workflow_defs(
        self, *, timeout_s: float | None = None, retry_budget_s: float | None = None
    ) -> list[dict[str, Any]]:
        """Lists every registered version of every workflow definition (page by page).

        Args:
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            One decoded definition per version; each has at least ``name`` and ``version``.

        Raises:
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """

        def fetch(token: str) -> tuple[list[dict[str, Any]], str]:
            response = self._transport.invoke(
                definitions_pb2.ListWorkflowDefsRequest(page_token=token),
                definitions_pb2.ListWorkflowDefsResponse,
                timeout_s=timeout_s,
                retry_budget_s=retry_budget_s,
            )
            return workflow_defs_page(response)

        return list(pages(fetch))

    def register_task_defs(
        self,
        task_defs: Sequence[Mapping[str, Any] | str],
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        retry_budget_s: float | None = None,
    ) -> list[str]:
        """Registers or replaces task definitions (retry policy, timeouts) by name.

        Args:
            task_defs: Task definitions as dicts, or as JSON text passed verbatim.
            request_id: Idempotency id of this call; generated when None.
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            The registered names, in order.

        Raises:
            InvalidArgumentError: A definition is malformed.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        request = task_defs_request(task_defs, request_id)
        response = self._transport.invoke(
            request,
            definitions_pb2.RegisterTaskDefsResponse,
            request.request_id,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return list(response.names)

    def get_task_def(
        self, name: str, *, timeout_s: float | None = None, retry_budget_s: float | None = None
    ) -> dict[str, Any]:
        """Fetches a task definition.

        Args:
            name: The task definition name (the task type).
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            The task definition as Conductor JSON decoded to a dict.

        Raises:
            NotFoundError: No such task definition.
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """
        response = self._transport.invoke(
            definitions_pb2.GetTaskDefRequest(name=name),
            definitions_pb2.GetTaskDefResponse,
            timeout_s=timeout_s,
            retry_budget_s=retry_budget_s,
        )
        return decode_object(response.task_def_json)

    def list_task_defs(
        self, *, timeout_s: float | None = None, retry_budget_s: float | None = None
    ) -> list[dict[str, Any]]:
        """Lists every task definition (page by page).

        Args:
            timeout_s: Per-attempt deadline override.
            retry_budget_s: Overall deadline override.

        Returns:
            The decoded task definitions.

        Raises:
            UnavailableError: No replica served the call within the retry budget.
            OrchestratorError: Any other server error.
        """

        def fetch(token: str) -> tuple[list[dict[str, Any]], str]:
            response = self._transport.invoke(
                definitions_pb2.ListTaskDefsRequest(page_token=token),
                definitions_pb2.ListTaskDefsResponse,
                timeout_s=timeout_s,
                retry_budget_s=retry_budget_s,
            )
            return task_defs_page(response)

        return list(pages(fetch))
