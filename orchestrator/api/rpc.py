"""The services and their methods, from the generated descriptors (no hand-written tables)."""

from __future__ import annotations

from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from orchestrator_client.v1 import cluster_pb2, definitions_pb2, tasks_pb2, workflows_pb2

DEFINITIONS: ServiceDescriptor = definitions_pb2.DESCRIPTOR.services_by_name["DefinitionService"]
WORKFLOWS: ServiceDescriptor = workflows_pb2.DESCRIPTOR.services_by_name["WorkflowService"]
TASKS: ServiceDescriptor = tasks_pb2.DESCRIPTOR.services_by_name["TaskService"]
CLUSTER: ServiceDescriptor = cluster_pb2.DESCRIPTOR.services_by_name["ClusterService"]
SERVICES: tuple[ServiceDescriptor, ...] = (DEFINITIONS, WORKFLOWS, TASKS, CLUSTER)


def response_type(service: ServiceDescriptor, method: str) -> Any:
    """The generated response message class of service/method (e.g. to decode a forwarded
    call's answer)."""
    return message_factory.GetMessageClass(service.methods_by_name[method].output_type)


def path(service: ServiceDescriptor, method: str) -> str:
    """The method's gRPC path, /package.Service/Method."""
    return f"/{service.full_name}/{service.methods_by_name[method].name}"
