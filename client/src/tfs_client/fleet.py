"""``tfs-client fleet-status``: every node of a fleet at a glance.

Prometheus (the monitoring role's configuration) knows the nodes: job ``tfserving`` has
one target per node with the labels ``node``, ``grpc`` (the node's gRPC address) and
``image``, and job ``tfserving_models`` one blackbox probe per node and model. From there
each node is asked over gRPC for the state of each of its models' versions, and Prometheus
for the request rate and the failed requests over the last minutes.

A node that runs several servers (the tfserving role's tfserving_instance_mode) has a
target and probes per server, also labelled ``server`` (its load balancer name: the node's
for server 0, NODE-i after); each server is a row of its own, under that name.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import EXIT_FAILURE, EXIT_OK, EXIT_UNAVAILABLE, TfsClientError

REQUEST_COUNT = ":tensorflow:serving:request_count"


@dataclass
class ModelState:
    name: str
    versions: list[dict[str, Any]] = field(default_factory=list)  # version, state
    error: str | None = None  # why the versions could not be read
    request_rate: float | None = None  # requests per second over the window
    requests: float | None = None  # requests over the window
    failed: float | None = None  # requests with a status other than OK over the window

    @property
    def available(self) -> bool:
        return any(v["state"] == "AVAILABLE" for v in self.versions)


@dataclass
class NodeState:
    node: str
    scraped: bool
    image: str
    grpc: str
    models: list[ModelState] = field(default_factory=list)
    server: str = ""  # the server's load balancer name (the node's own with one server)

    def __post_init__(self) -> None:
        self.server = self.server or self.node

    @property
    def healthy(self) -> bool:
        return self.scraped and all(m.available for m in self.models)


class Prometheus:
    """The instant-query endpoint of Prometheus's HTTP API."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """``[(labels, value)]`` of an instant vector."""
        address = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        try:
            with urllib.request.urlopen(address, timeout=self.timeout) as answer:
                body = json.load(answer)
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            raise TfsClientError(
                f"Prometheus at {self.url} refused the query {expr!r}: {err.code} {detail}"
            ) from err
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise TfsClientError(
                f"cannot query Prometheus at {self.url}: {reason}", EXIT_UNAVAILABLE
            ) from err
        data = body.get("data", {})
        if body.get("status") != "success" or data.get("resultType") != "vector":
            raise TfsClientError(f"Prometheus at {self.url} answered {expr!r} with {body}")
        return [(item["metric"], float(item["value"][1])) for item in data["result"]]

    def active_targets(self, job: str) -> list[dict[str, str]] | None:
        """The labels of JOB's targets Prometheus scrapes now (/api/v1/targets); None when
        this Prometheus does not answer that endpoint."""
        address = f"{self.url}/api/v1/targets?state=active"
        try:
            with urllib.request.urlopen(address, timeout=self.timeout) as answer:
                body = json.load(answer)
        except (urllib.error.URLError, OSError, ValueError):
            return None
        targets = body.get("data", {}).get("activeTargets")
        if body.get("status") != "success" or not isinstance(targets, list):
            return None
        return [t.get("labels", {}) for t in targets if t.get("labels", {}).get("job") == job]


# (grpc address, model name) -> [{"version": int, "state": str}]
StatusReader = Callable[[str, str], list[dict[str, Any]]]


def _identity(labels: dict[str, str]) -> frozenset[tuple[str, str]]:
    """A series' labels without its metric name, as a target's labels are."""
    return frozenset((k, v) for k, v in labels.items() if k != "__name__")


def collect(prometheus: Prometheus, read_status: StatusReader, minutes: int) -> list[NodeState]:
    """Every node Prometheus scrapes as a TF Serving node, with its models."""
    window = f"{minutes}m"
    nodes: dict[str, NodeState] = {}
    series = prometheus.query('up{job="tfserving"}')
    # A server removed or moved (its node's server count or ports changed) keeps its last
    # `up` within Prometheus' lookback: only the targets Prometheus scrapes now count.
    active = prometheus.active_targets("tfserving")
    if active is not None:
        current = {_identity(labels) for labels in active}
        series = [(labels, value) for labels, value in series if _identity(labels) in current]
    for labels, value in series:
        name = labels.get("node") or labels.get("instance", "?")
        server = labels.get("server") or name
        nodes[server] = NodeState(
            name, value == 1, labels.get("image", ""), labels.get("grpc", ""), server=server
        )

    def key_of(labels: dict[str, str]) -> str:
        """The server a series belongs to: its `server` label, else its node."""
        return labels.get("server") or labels.get("node", "")

    models: dict[tuple[str, str], ModelState] = {}
    for labels, _ in prometheus.query('probe_success{job="tfserving_models"}'):
        if key_of(labels) in nodes and labels.get("model"):
            models[(key_of(labels), labels["model"])] = ModelState(labels["model"])
    # TF Serving counts requests by model and status ("OK" or the error code's name).
    selector = f'{REQUEST_COUNT}{{job="tfserving"}}'
    failed_selector = f'{REQUEST_COUNT}{{job="tfserving",status!="OK"}}'
    by = "sum by (node, server, model_name)"
    measures = {
        "request_rate": f"{by} (rate({selector}[{window}]))",
        "requests": f"{by} (increase({selector}[{window}]))",
        "failed": f"{by} (increase({failed_selector}[{window}]))",
    }
    for attribute, expr in measures.items():
        for labels, value in prometheus.query(expr):
            key = (key_of(labels), labels.get("model_name", ""))
            if key[0] in nodes and key[1]:
                setattr(models.setdefault(key, ModelState(key[1])), attribute, value)
    for model in models.values():
        # A model that served requests has no failures unless counted.
        if model.requests is not None and model.failed is None:
            model.failed = 0.0

    def fill(key: tuple[str, str]) -> None:
        node, model = nodes[key[0]], models[key]
        if not node.grpc:
            model.error = "no grpc label on the node's scrape target"
            return
        try:
            model.versions = read_status(node.grpc, model.name)
        except TfsClientError as err:
            model.error = str(err)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(fill, sorted(models)))
    for (node_name, _), model in sorted(models.items()):
        nodes[node_name].models.append(model)
    return [nodes[name] for name in sorted(nodes)]


def exit_code(nodes: Sequence[NodeState]) -> int:
    """0 when every node is scraped and every model has a version AVAILABLE."""
    return EXIT_OK if nodes and all(node.healthy for node in nodes) else EXIT_FAILURE


def to_json(prometheus_url: str, minutes: int, nodes: Sequence[NodeState]) -> dict[str, Any]:
    return {
        "prometheus": prometheus_url,
        "window_minutes": minutes,
        "healthy": exit_code(nodes) == EXIT_OK,
        "nodes": [
            {**asdict(node), "healthy": node.healthy,
             "models": [{**asdict(m), "available": m.available} for m in node.models]}
            for node in nodes
        ],
    }  # fmt: skip


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(prometheus_url: str, minutes: int, nodes: Sequence[NodeState]) -> list[str]:
    header = ("NODE", "SCRAPE", "IMAGE", "MODEL", "VERSIONS", "REQ/S", "FAILED")
    rows: list[tuple[str, ...]] = []
    for node in nodes:
        scrape = "up" if node.scraped else "DOWN"
        for index, model in enumerate(node.models or [ModelState("-")]):
            if model.error:
                versions = f"error: {model.error}"
            else:
                versions = " ".join(f"{v['version']}:{v['state']}" for v in model.versions) or "-"
            lead = (node.server, scrape, node.image or "-") if index == 0 else ("", "", "")
            rows.append(
                (
                    *lead,
                    model.name,
                    versions,
                    _number(model.request_rate, 2),
                    _number(model.failed, 0),
                )
            )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = [f"prometheus {prometheus_url}, requests over the last {minutes} min"]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    if not nodes:
        lines.append('(no target of job "tfserving" in Prometheus)')
    return lines


def run_command(args: Any) -> int:
    """The ``fleet-status`` command, given its parsed options."""
    import sys

    from . import render
    from .api import Client, ModelRef
    from .connection import TlsOptions

    tls = None
    if args.tls or args.ca_file or args.cert_file or args.key_file:
        tls = TlsOptions(args.ca_file, args.cert_file, args.key_file)

    def read_status(target: str, model: str) -> list[dict[str, Any]]:
        with Client(target, tls=tls, timeout=args.timeout) as client:
            return [
                {"version": v.version, "state": v.state}
                for v in client.model_status(ModelRef(model))
            ]

    prometheus = Prometheus(args.prometheus, args.timeout)
    nodes = collect(prometheus, read_status, args.minutes)
    if args.json:
        print(render.dumps(to_json(prometheus.url, args.minutes, nodes)))
    else:
        sys.stdout.write(
            "".join(f"{line}\n" for line in format_table(prometheus.url, args.minutes, nodes))
        )
    return exit_code(nodes)
