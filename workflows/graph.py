"""A workflow's steps as a layered drawing (the dashboard's DAG, rendered as SVG by a template).

Layers run top to bottom: a step sits one layer below the deepest step it depends on. Inside a layer,
steps are ordered by the mean position of their dependencies (one barycentre pass, then definition order
for ties), which keeps most edges from crossing without a layout library."""

from dataclasses import dataclass, field

from workflows.definition import dependency_graph

NODE_WIDTH = 200
NODE_HEIGHT = 46
GAP_X = 28
GAP_Y = 54
MARGIN = 16
LABEL_CHARS = 26


@dataclass(frozen=True)
class Node:
    id: str
    type: str
    x: int
    y: int
    status: str = ""
    label: str = ""

    @property
    def cx(self) -> int:
        return self.x + NODE_WIDTH // 2


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    path: str


@dataclass
class Layout:
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    width: int = 0
    height: int = 0
    node_width: int = NODE_WIDTH
    node_height: int = NODE_HEIGHT


def _label(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def dag_layout(definition: dict, statuses: dict[str, str] | None = None) -> Layout:
    """Positions for every step of a valid definition (no cycles), with each edge as an SVG path from the
    bottom of a dependency to the top of its dependent; `statuses` (step id -> status) colours nodes."""
    graph = dependency_graph(definition)
    types = {
        step.get("id"): str(step.get("type", ""))
        for step in definition.get("steps") or []
        if isinstance(step, dict)
    }
    depth: dict[str, int] = {}

    def layer_of(step_id: str, trail: frozenset = frozenset()) -> int:
        if step_id not in depth:
            deps = [dep for dep in graph[step_id] if dep not in trail]
            depth[step_id] = 1 + max((layer_of(dep, trail | {step_id}) for dep in deps), default=-1)
        return depth[step_id]

    for step_id in graph:
        layer_of(step_id)
    layers: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for step_id in graph:  # definition order
        layers[depth[step_id]].append(step_id)
    position: dict[str, float] = {}
    for row in layers:

        def weight(step_id: str) -> float:
            deps = graph[step_id]
            return sum(position[dep] for dep in deps) / len(deps) if deps else -1.0

        row.sort(key=weight)  # stable: definition order among equals
        for index, step_id in enumerate(row):
            position[step_id] = float(index)

    widest = max((len(row) for row in layers), default=0)
    width = 2 * MARGIN + widest * NODE_WIDTH + max(0, widest - 1) * GAP_X
    statuses = statuses or {}
    nodes: dict[str, Node] = {}
    for level, row in enumerate(layers):
        row_width = len(row) * NODE_WIDTH + max(0, len(row) - 1) * GAP_X
        start = (width - row_width) // 2
        for index, step_id in enumerate(row):
            nodes[step_id] = Node(
                id=step_id,
                type=types.get(step_id, ""),
                x=start + index * (NODE_WIDTH + GAP_X),
                y=MARGIN + level * (NODE_HEIGHT + GAP_Y),
                status=statuses.get(step_id, ""),
                label=_label(step_id),
            )
    edges = []
    for step_id, deps in graph.items():
        target = nodes[step_id]
        for dep in deps:
            source = nodes[dep]
            x1, y1 = source.cx, source.y + NODE_HEIGHT
            x2, y2 = target.cx, target.y - 4
            middle = (y1 + y2) // 2
            edges.append(Edge(dep, step_id, f"M{x1},{y1} C{x1},{middle} {x2},{middle} {x2},{y2}"))
    height = 2 * MARGIN + len(layers) * NODE_HEIGHT + max(0, len(layers) - 1) * GAP_Y
    return Layout(nodes=[nodes[s] for s in graph], edges=edges, width=width, height=height)
