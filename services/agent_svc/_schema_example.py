"""A deterministic instance that validates against a compiled schema.

Used by the offline `test` provider, whose model must answer with a valid value. The
generator proposes values subschema by subschema (constants and enum members first,
then values built from the keywords) and keeps only proposals the exact validator
accepts, so whatever it returns is valid by construction. Recursion is cut by preferring
the branch with the shallowest possible instance (precomputed per subschema), by empty
arrays and by leaving optional properties out.

What it cannot always do, and then reports as a `SchemaError` pointing at the
subschema: satisfy an unsatisfiable schema, and satisfy a `pattern` together with a
`format` or with lengths its simple strategy (shortest expansions, padding around
unanchored matches) does not reach.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from typing import Final, cast

from libs.common.jsonvalue import JsonObject, JsonValue
from services.agent_svc._schema_types import SchemaError
from services.agent_svc._schema_validate import NO_VALUE, Node, json_key, node_accepts

__all__ = ["build_example"]

_INFINITE: Final = 1 << 30
_MAX_STEPS: Final = 20_000
_PER_SOURCE: Final = 24
"""Proposals taken from one source (a branch, a type) before trying the next."""
_ACCEPT_ALL: Final = Node("", accept_all=True)


class _OutOfSteps(Exception):
    pass


def _all_nodes(root: Node) -> list[Node]:
    """Every node reachable from the root, children after parents."""
    seen: set[int] = set()
    order: list[Node] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        order.append(node)
        stack.extend(node.properties.values())
        stack.extend(child for child in (node.additional, node.items, node.ref) if child is not None)
        stack.extend(node.any_of)
        stack.extend(node.one_of)
    return order


def _heights(root: Node) -> dict[int, int]:
    """Per node, the nesting depth of its shallowest instance (an estimate, by fixpoint)."""
    nodes = _all_nodes(root)
    height = {id(node): _INFINITE for node in nodes}

    def of(node: Node | None) -> int:
        return 0 if node is None else height[id(node)]

    changed = True
    while changed:
        changed = False
        for node in reversed(nodes):
            estimate = _estimate(node, of)
            if estimate < height[id(node)]:
                height[id(node)] = estimate
                changed = True
    return height


def _estimate(node: Node, of: Callable[[Node | None], int]) -> int:
    if node.reject_all:
        return _INFINITE
    if node.accept_all or node.const is not NO_VALUE or node.enum is not None:
        return 0
    options: list[int] = []
    for kind in _types(node):
        if kind == "object":
            needed = [node.properties.get(name, node.additional) for name in node.required]
            options.append(1 + max((of(sub) for sub in needed), default=0))
        elif kind == "array":
            options.append(0 if not node.min_items else 1 + of(node.items))
        else:
            options.append(0)
    parts = [min(options, default=0)]
    if node.ref is not None:
        parts.append(of(node.ref))
    if node.any_of:
        parts.append(min(of(branch) for branch in node.any_of))
    if node.one_of:
        parts.append(min(of(branch) for branch in node.one_of))
    return min(max(parts), _INFINITE)


def _types(node: Node) -> list[str]:
    """The instance types to try, most informative first (null last)."""
    if node.types is not None:
        return sorted(node.types, key=lambda kind: kind == "null")
    inferred = []
    if node.has_object_keywords:
        inferred.append("object")
    if node.has_array_keywords:
        inferred.append("array")
    if node.has_string_keywords:
        inferred.append("string")
    if node.has_number_keywords:
        inferred.append("number")
    return inferred


def _format_examples(name: str, min_length: int) -> Iterator[str]:
    if name == "date-time":
        yield "1970-01-01T00:00:00Z"
        if min_length > 20:
            yield "1970-01-01T00:00:00." + "0" * (min_length - 21) + "Z"
        for day in range(2, 29):
            yield f"1970-01-{day:02d}T00:00:00Z"
    elif name == "date":
        for day in range(1, 29):
            yield f"1970-01-{day:02d}"
    elif name == "email":
        yield "user@example.com"
        yield "a@b"
        if min_length > 12:
            yield "a" * (min_length - 12) + "@example.com"
        for index in range(1, 30):
            yield f"user{index}@example.com"
    elif name == "uri":
        yield "https://example.com/"
        yield "a:"
        if min_length > 20:
            yield "https://example.com/" + "a" * (min_length - 20)
        for index in range(1, 30):
            yield f"https://example.com/{index}"
    elif name == "uuid":
        for index in range(30):
            yield f"00000000-0000-4000-8000-{index:012d}"


def _bounds(node: Node) -> tuple[float | int | None, float | int | None, int | None, int | None]:
    """(lowest, highest) allowed number, as given, and the same rounded inward to integers."""
    lows = [bound for bound in (node.minimum, node.exclusive_minimum) if bound is not None]
    highs = [bound for bound in (node.maximum, node.exclusive_maximum) if bound is not None]
    low = max(lows) if lows else None
    high = min(highs) if highs else None
    int_low: int | None = None
    if node.minimum is not None:
        int_low = math.ceil(node.minimum)
    if node.exclusive_minimum is not None:
        candidate = math.floor(node.exclusive_minimum) + 1
        int_low = candidate if int_low is None else max(int_low, candidate)
    int_high: int | None = None
    if node.maximum is not None:
        int_high = math.floor(node.maximum)
    if node.exclusive_maximum is not None:
        candidate = math.ceil(node.exclusive_maximum) - 1
        int_high = candidate if int_high is None else min(int_high, candidate)
    return low, high, int_low, int_high


def _integers(node: Node) -> Iterator[int]:
    try:
        yield from _integer_candidates(node)
    except (OverflowError, ValueError):
        return


def _integer_candidates(node: Node) -> Iterator[int]:
    _, _, low, high = _bounds(node)
    if low is not None and high is not None and low > high:
        return
    if (low is None or low <= 0) and (high is None or high >= 0):
        start, direction = 0, 0
    elif low is not None and low > 0:
        start, direction = low, 1
    else:
        assert high is not None
        start, direction = high, -1
    step = node.multiple_of if type(node.multiple_of) is int else 1
    assert isinstance(step, int)
    if step > 1:
        # Align the start on a multiple, moving inwards.
        start = -(-start // step) * step if direction >= 0 else start // step * step
    for index in range(_PER_SOURCE * 4):
        if direction == 0:
            offset = (index + 1) // 2 * (1 if index % 2 else -1) * step
            yield start - offset if index else start
        else:
            yield start + direction * index * step


def _floats(node: Node) -> Iterator[float]:
    try:
        yield from _float_candidates(node)
    except (OverflowError, ValueError):
        return  # bounds beyond what a float can reach: let other sources try


def _float_candidates(node: Node) -> Iterator[float]:
    low, high, _, _ = _bounds(node)
    multiple = node.multiple_of
    if multiple is not None:
        first = math.ceil(low / multiple) if low is not None else 0
        for index in range(_PER_SOURCE):
            yield float((first + index) * multiple)
    if low is not None and high is not None:
        yield (low + high) / 2
    if low is not None:
        yield math.nextafter(float(low), math.inf)
        yield low + 0.5
    if high is not None:
        yield math.nextafter(float(high), -math.inf)
        yield high - 0.5
    yield 0.5


class _Generator:
    def __init__(self, root: Node, max_depth: int) -> None:
        self.height = _heights(root)
        self.max_depth = max_depth
        self.steps = 0
        self.failed: str | None = None

    def tick(self) -> None:
        self.steps += 1
        if self.steps > _MAX_STEPS:
            raise _OutOfSteps

    def first(self, node: Node, depth: int) -> JsonValue | None:
        for value in self.candidates(node, depth):
            return value
        return None

    def candidates(self, node: Node, depth: int) -> Iterator[JsonValue]:
        """Distinct valid values for `node`, most preferred first (lazily)."""
        if depth > self.max_depth or node.reject_all or self.height.get(id(node), 0) >= _INFINITE:
            self.failed = self.failed or node.pointer
            return
        seen: set[tuple[object, ...]] = set()
        found = False
        for proposal in self.proposals(node, depth):
            self.tick()
            key = json_key(proposal)
            if key in seen or not node_accepts(node, proposal):
                continue
            seen.add(key)
            found = True
            yield proposal
        if not found:
            self.failed = self.failed or node.pointer

    def proposals(self, node: Node, depth: int) -> Iterator[JsonValue]:
        if node.accept_all:
            yield from (None, 0, 1, "a", True, False, 2, "b", 3, "c")
            yield from range(4, 4 + _PER_SOURCE)
            return
        if node.const is not NO_VALUE:
            yield cast(JsonValue, node.const)
            return
        if node.enum is not None:
            yield from node.enum
            return
        branches = sorted(node.any_of + node.one_of, key=lambda branch: self.height.get(id(branch), 0))
        if node.ref is not None:
            branches.insert(0, node.ref)
        for branch in branches:
            yield from itertools.islice(self.candidates(branch, depth), _PER_SOURCE)
        for kind in _types(node):
            yield from itertools.islice(self.typed(node, kind, depth), _PER_SOURCE * 4)

    def typed(self, node: Node, kind: str, depth: int) -> Iterator[JsonValue]:
        if kind == "null":
            yield None
        elif kind == "boolean":
            yield from (True, False)
        elif kind in ("integer", "number"):
            # A few integers, then floats (an integer may be what rules a branch out:
            # oneOf [number, integer]), then more integers.
            integers = _integers(node)
            yield from itertools.islice(integers, 8)
            if kind == "number" or node.multiple_of is not None:
                yield from _floats(node)
            yield from integers
        elif kind == "string":
            yield from self.strings(node)
        elif kind == "array":
            yield from self.arrays(node, depth)
        elif kind == "object":
            yield from self.objects(node, depth)

    def strings(self, node: Node) -> Iterator[str]:
        low = node.min_length or 0
        if node.pattern is not None:
            yield from itertools.islice(node.pattern.examples(low), _PER_SOURCE * 4)
        if node.format is not None:
            yield from _format_examples(node.format, low)
        if node.pattern is None and node.format is None:
            size = max(low, 1) if node.max_length != 0 else 0
            for char in "abcdefghijklmnopqrstuvwxyz":
                yield char * size

    def arrays(self, node: Node, depth: int) -> Iterator[list[JsonValue]]:
        items = node.items if node.items is not None else _ACCEPT_ALL
        count = node.min_items or 0
        if count == 0:
            yield []
        pool = list(itertools.islice(self.candidates(items, depth + 1), count + 3))
        if not pool:
            return
        if node.unique_items:
            if len(pool) >= count:
                yield pool[:count]
                for extra in range(count, len(pool)):
                    yield [*pool[:count], pool[extra]]
        else:
            yield [pool[0]] * count
            for value in pool[1:]:
                yield [value] * max(count, 1)

    def objects(self, node: Node, depth: int) -> Iterator[JsonObject]:
        base: JsonObject = {}
        for name in node.required:
            subschema = node.properties.get(name, node.additional)
            value = self.first(subschema if subschema is not None else _ACCEPT_ALL, depth + 1)
            if value is None and not self._null_ok(subschema):
                return
            base[name] = value
        yield base
        # Variations, for arrays of unique objects and for object-level constraints.
        for name, subschema in node.properties.items():
            if name in base:
                continue
            value = self.first(subschema, depth + 1)
            if value is not None or self._null_ok(subschema):
                yield {**base, name: value}
        for name in node.required:
            subschema = node.properties.get(name, node.additional) or _ACCEPT_ALL
            for value in itertools.islice(self.candidates(subschema, depth + 1), 1, 4):
                yield {**base, name: value}

    def _null_ok(self, node: Node | None) -> bool:
        return node is None or node_accepts(node, None)


def _culprit(node: Node, height: dict[int, int]) -> str:
    """Follow what makes a subschema unsatisfiable down to the most specific pointer."""
    seen: set[int] = set()
    while id(node) not in seen:
        seen.add(id(node))
        needed: list[Node | None] = []
        if node.ref is not None:
            needed.append(node.ref)
        needed += [node.properties.get(name, node.additional) for name in node.required]
        if node.min_items:
            needed.append(node.items)
        if node.any_of and all(height.get(id(branch), 0) >= _INFINITE for branch in node.any_of):
            needed.append(node.any_of[0])
        if node.one_of and all(height.get(id(branch), 0) >= _INFINITE for branch in node.one_of):
            needed.append(node.one_of[0])
        blocking = [child for child in needed if child is not None and height.get(id(child), 0) >= _INFINITE]
        if not blocking:
            break
        node = blocking[0]
    return node.pointer


def build_example(root: Node, max_depth: int) -> JsonObject:
    """The first valid instance the generator finds; `SchemaError` if there is none."""
    generator = _Generator(root, max_depth=min(max_depth, 40))
    try:
        for value in generator.candidates(root, 1):
            assert isinstance(value, dict)  # the root schema only accepts objects
            return value
    except _OutOfSteps:
        pass
    pointer = generator.failed or ""
    if generator.height.get(id(root), 0) >= _INFINITE:
        pointer = _culprit(root, generator.height)
    raise SchemaError(
        pointer,
        "no example instance could be built: the subschema is unsatisfiable, or combines "
        "a pattern with a format or lengths the generator cannot solve",
    )
