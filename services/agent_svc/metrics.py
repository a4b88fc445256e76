"""agent_svc's Prometheus metrics: the agent registry and runs (docs/operations.md).

The registry already counts its hits, misses, builds and evictions (`RegistryStats`);
they are read when Prometheus scrapes, so the run path pays nothing for them. Runs in
progress are read the same way. Only a finished run costs an increment.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from libs.common.logging import get_logger
from services.agent_svc.domain import Run
from services.agent_svc.registry import Registry

__all__ = ["RUNS_FINISHED", "observe_finished_run", "track_registry", "track_runs"]

_log = get_logger(__name__)

RUNS_FINISHED = Counter(
    "agentmgr_runs_finished_total",
    "Runs that ended, by status and error code (empty when succeeded)",
    ["status", "error_code"],
)


class _InProgress(Protocol):
    @property
    def in_progress(self) -> int: ...


# Weak sets: a process normally has one of each; tests start several servers in one.
_registries: weakref.WeakSet[Registry[Any, Any]] = weakref.WeakSet()
_run_services: weakref.WeakSet[_InProgress] = weakref.WeakSet()


def track_registry(registry: Registry[Any, Any]) -> None:
    """Report this registry's size and counters."""
    _registries.add(registry)


def track_runs(service: _InProgress) -> None:
    """Report how many runs this service is executing."""
    _run_services.add(service)


def observe_finished_run(run: Run) -> None:
    """Count a run that reached a final state (called once, when it is stored)."""
    code = run.error.code.value if run.error is not None else ""
    RUNS_FINISHED.labels(run.status.value, code).inc()
    if run.error is not None:
        # One line per failure (not per success): where an operator starts looking,
        # and it carries the trace id when tracing is on.
        _log.info("run_failed", run_id=run.id, agent_id=run.agent_id, error_code=code)


def _in_progress() -> float:
    return float(sum(s.in_progress for s in list(_run_services)))


RUNS_IN_PROGRESS = Gauge("agentmgr_runs_in_progress", "Runs executing in this process")
RUNS_IN_PROGRESS.set_function(_in_progress)


class _RegistryCollector(Collector):
    """The agent registry's size and counters, summed over the registries of the process."""

    def collect(self) -> Iterator[Metric]:
        registries = list(_registries)
        size = GaugeMetricFamily("agentmgr_agent_registry_entries", "Built agents cached (LRU)")
        size.add_metric([], sum(len(r) for r in registries))
        yield size
        counters = (
            ("hits", "Agent lookups served from the registry (including joined builds)"),
            ("misses", "Agent lookups that started a build"),
            ("builds", "Agents built"),
            ("build_failures", "Agent builds that failed"),
            ("evictions", "Cached agents dropped because the agent, task or provider changed"),
        )
        for field, documentation in counters:
            family = CounterMetricFamily(f"agentmgr_agent_registry_{field}", documentation)
            family.add_metric([], sum(getattr(r.stats, field) for r in registries))
            yield family


REGISTRY.register(_RegistryCollector())
