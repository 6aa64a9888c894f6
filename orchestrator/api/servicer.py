"""OrchestratorService: a thin adapter, protobuf -> domain -> core call -> protobuf.

Runs go to any :class:`RunService`; saved graphs to :class:`SavedGraphStore`; the catalog
and code export come from the engine. Exceptions are not handled here: the
:class:`~graphmesh.orchestrator.api.errors.ErrorInterceptor` maps them through one table,
and the caller's tenant comes from :func:`~graphmesh.orchestrator.api.auth.current_tenant`.
Every request has passed the :class:`~graphmesh.orchestrator.api.edge.EdgeInterceptor`;
what it converts here is checked by the wire layer (:mod:`graphmesh.orchestrator.wire`)
against the same limits, and every graph against the tenant's graph size quota, before
any core call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from graphmesh.orchestrator.api.auth import current_tenant
from graphmesh.orchestrator.api.trace_context import traceparent_of
from graphmesh.orchestrator.builder.codegen import graph_to_code
from graphmesh.orchestrator.catalog import catalog_entries
from graphmesh.orchestrator.errors import GraphIssue, GraphValidationError
from graphmesh.orchestrator.policy import TaskPolicy, policy_issues
from graphmesh.orchestrator.runs.quotas import QuotaPolicy
from graphmesh.orchestrator.runs.records import JsonObject, RunFilter, RunService
from graphmesh.orchestrator.storage.saved_graphs import (
    SavedGraphStore,
    canonical_graph,
    check_graph,
)
from graphmesh.orchestrator.task.registry import TaskRegistry, default_registry
from graphmesh.orchestrator.wire import convert
from graphmesh.orchestrator.wire.events import event_to_proto
from graphmesh.orchestrator.wire.validation import RequestLimits, clamp_page_size
from graphmesh.orchestrator.wire.values import dict_to_struct, task_status_to_proto
from graphmesh.v1 import orchestrator_pb2 as pb
from graphmesh.v1 import orchestrator_pb2_grpc

Context = Any  # grpc.aio.ServicerContext


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    def __init__(
        self,
        runs: RunService,
        graphs: SavedGraphStore,
        registry: TaskRegistry = default_registry,
        *,
        limits: RequestLimits | None = None,
        quotas: QuotaPolicy | None = None,
        policy: TaskPolicy | None = None,
    ) -> None:
        self.runs = runs
        self.graphs = graphs
        self.registry = registry
        self.limits = limits or RequestLimits()
        self.quotas = quotas or QuotaPolicy()
        self.policy = policy or TaskPolicy()

    async def ListTaskTypes(
        self, request: pb.ListTaskTypesRequest, context: Context
    ) -> pb.ListTaskTypesResponse:
        usable = self.policy.for_tenant(current_tenant())
        entries = [
            entry
            for entry in catalog_entries(self.registry)
            if (not request.category or entry["category"] == request.category)
            and usable.allows(self.registry.get(str(entry["type"])))
        ]
        return pb.ListTaskTypesResponse(
            task_types=[
                convert.task_type_to_proto(entry, self.registry.get(entry["type"]).version)
                for entry in sorted(entries, key=lambda entry: str(entry["type"]))
            ]
        )

    async def ValidateGraph(
        self, request: pb.ValidateGraphRequest, context: Context
    ) -> pb.ValidateGraphResponse:
        data = self._graph_source(request)
        canonical, issues = check_graph(data, self.registry)
        if canonical is not None:
            issues += self._refused(canonical)
        response = pb.ValidateGraphResponse(
            valid=not issues, violations=[convert.violation_to_proto(i) for i in issues]
        )
        if canonical is not None:
            response.graph.CopyFrom(convert.graph_to_proto(canonical))
        return response

    async def CreateRun(
        self, request: pb.CreateRunRequest, context: Context
    ) -> pb.CreateRunResponse:
        inputs = convert.inputs_from_proto(request.inputs, self.limits)
        timeout = convert.timeout_from_request(request, self.limits)
        record = await self.runs.create_run(
            graph=await self._graph_of(request),
            inputs=inputs,
            tenant=current_tenant(),
            idempotency_key=request.idempotency_key or None,
            labels=dict(request.labels),
            timeout=timeout,
            traceparent=traceparent_of(context.invocation_metadata()),
        )
        return pb.CreateRunResponse(
            run=convert.run_to_proto(record), deduplicated=record.deduplicated
        )

    async def GetRun(self, request: pb.GetRunRequest, context: Context) -> pb.GetRunResponse:
        record = await self.runs.get_run(request.run_id, tenant=current_tenant())
        return pb.GetRunResponse(run=convert.run_to_proto(record, request.view or pb.RUN_VIEW_FULL))

    async def ListRuns(self, request: pb.ListRunsRequest, context: Context) -> pb.ListRunsResponse:
        run_filter = RunFilter(
            tenant=current_tenant(),
            statuses=convert.statuses_from_request(request.statuses),
            labels=dict(request.labels),
        )
        page = await self.runs.list_runs(
            run_filter,
            page_size=clamp_page_size(request.page_size, self.limits),
            page_token=request.page_token,
        )
        view = request.view or pb.RUN_VIEW_BASIC
        return pb.ListRunsResponse(
            runs=[convert.run_to_proto(record, view) for record in page.items],
            next_page_token=page.next_page_token,
        )

    async def CancelRun(
        self, request: pb.CancelRunRequest, context: Context
    ) -> pb.CancelRunResponse:
        record = await self.runs.cancel_run(
            request.run_id, tenant=current_tenant(), reason=request.reason
        )
        return pb.CancelRunResponse(run=convert.run_to_proto(record))

    async def ResumeRun(
        self, request: pb.ResumeRunRequest, context: Context
    ) -> pb.ResumeRunResponse:
        record = await self.runs.resume_run(request.run_id, tenant=current_tenant())
        return pb.ResumeRunResponse(run=convert.run_to_proto(record))

    async def WatchRun(
        self, request: pb.WatchRunRequest, context: Context
    ) -> AsyncIterator[pb.WatchRunResponse]:
        # The API's from_seq is the first seq to deliver; the RunService's is the last seen.
        events = self.runs.watch_run(
            request.run_id, tenant=current_tenant(), from_seq=max(0, request.from_seq - 1)
        )
        async for event in events:
            yield pb.WatchRunResponse(event=event_to_proto(event))

    async def GetTaskOutput(
        self, request: pb.GetTaskOutputRequest, context: Context
    ) -> pb.GetTaskOutputResponse:
        tenant = current_tenant()
        output = await self.runs.get_task_output(request.run_id, request.task_id, tenant=tenant)
        record = await self.runs.get_run(request.run_id, tenant=tenant)
        state = next(task for task in record.tasks if task.task_id == request.task_id)
        return pb.GetTaskOutputResponse(
            output=dict_to_struct(output),
            status=task_status_to_proto(state.status),
            output_ref=state.output_ref,
        )

    async def SaveGraph(
        self, request: pb.SaveGraphRequest, context: Context
    ) -> pb.SaveGraphResponse:
        saved = await self.graphs.save(
            tenant=current_tenant(),
            graph=self._allowed(canonical_graph(self._graph_source(request), self.registry)),
            graph_id=request.graph_id,
            name=request.name,
            description=request.description,
            labels=dict(request.labels),
        )
        return pb.SaveGraphResponse(graph=convert.saved_graph_to_proto(saved))

    async def GetGraph(self, request: pb.GetGraphRequest, context: Context) -> pb.GetGraphResponse:
        saved = await self.graphs.get(tenant=current_tenant(), graph_id=request.graph_id)
        return pb.GetGraphResponse(graph=convert.saved_graph_to_proto(saved))

    async def ListGraphs(
        self, request: pb.ListGraphsRequest, context: Context
    ) -> pb.ListGraphsResponse:
        page = await self.graphs.list_graphs(
            tenant=current_tenant(),
            labels=dict(request.labels),
            page_size=clamp_page_size(request.page_size, self.limits),
            page_token=request.page_token,
        )
        return pb.ListGraphsResponse(
            graphs=[convert.saved_graph_to_proto(saved) for saved in page.items],
            next_page_token=page.next_page_token,
        )

    async def ExportCode(
        self, request: pb.ExportCodeRequest, context: Context
    ) -> pb.ExportCodeResponse:
        graph = canonical_graph(await self._graph_of(request), self.registry)
        return pb.ExportCodeResponse(python_source=graph_to_code(graph, registry=self.registry))

    async def _graph_of(self, request: pb.CreateRunRequest | pb.ExportCodeRequest) -> JsonObject:
        """The request's graph as canonical graph JSON, loading a saved one by id."""
        if request.WhichOneof("graph_source") == "graph_id":
            saved = await self.graphs.get(tenant=current_tenant(), graph_id=request.graph_id)
            return self._allowed(saved.graph)
        return self._allowed(canonical_graph(self._graph_source(request), self.registry))

    def _refused(self, graph: JsonObject) -> list[GraphIssue]:
        """The tasks of ``graph`` the caller's tenant may not use (the task policy)."""
        return policy_issues(graph, self.policy.for_tenant(current_tenant()), self.registry)

    def _allowed(self, graph: JsonObject) -> JsonObject:
        """``graph``, if the caller's tenant may use every task in it."""
        refused = self._refused(graph)
        if refused:
            raise GraphValidationError(refused)
        return graph

    def _graph_source(self, request: Any) -> Any:
        """The request's graph as JSON, within the request limits and the tenant's graph
        size quota (checked before the graph is loaded)."""
        data = convert.graph_source(request, self.limits)
        self.quotas.check_graph(current_tenant(), data)
        return data
