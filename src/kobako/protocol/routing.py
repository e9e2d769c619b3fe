"""Find the operation a REST request names, from the model's HTTP bindings.

Each operation's `requestUri` (`/{Bucket}/{Key+}?uploads`) becomes a path regex plus
literal query keys. Several operations can share a method and path (S3's PutObject,
CopyObject, UploadPart, UploadPartCopy): the match wins that is most specific, that
is, compared in this order, names the most literal query keys, has the most required
header and query members present, the longest literal path, is not deprecated (S3's
GetBucketLifecycle and GetBucketLifecycleConfiguration are the same request), and has
the most optional header and query members present (ListBuckets or, given
`max-directory-buckets`, ListDirectoryBuckets). That rule comes from the model alone;
no per-operation table.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from kobako.protocol.http import HttpRequest
from kobako.spec import OperationModel, ServiceModel


@dataclass(frozen=True)
class _Route:
    operation: OperationModel
    method: str
    pattern: re.Pattern[str]
    labels: tuple[str, ...]
    literal_query: tuple[tuple[str, str | None], ...]
    required_headers: tuple[str, ...]
    required_query: tuple[str, ...]
    optional_headers: tuple[str, ...]
    optional_query: tuple[str, ...]
    literal_path: int  # characters of the path template outside labels


_NONE: frozenset[str] = frozenset()
# Routing decisions remembered per method; cleared when full (query keys come from
# clients, so the number of distinct keys is bounded only by this).
_CACHE_LIMIT = 4096


@dataclass
class _MethodIndex:
    """The routes of one HTTP method and what their choice depends on."""

    routes: list[_Route] = field(default_factory=list)
    patterns: list[re.Pattern[str]] = field(default_factory=list)  # distinct templates
    pattern_of: list[int] = field(default_factory=list)  # route position -> pattern
    # Frozen: `frozenset.intersection` gives the cache key's part in one call.
    query_names: frozenset[str] = frozenset()
    query_values: list[tuple[str, str]] = field(default_factory=list)  # literal key=value
    header_names: frozenset[str] = frozenset()
    cache: dict[tuple[object, ...], int] = field(default_factory=dict)
    # Templates without labels (Batch's `/v1/submitjob`): found by one dict lookup of
    # the path without its trailing slash, instead of one regex each.
    literal: dict[str, list[int]] = field(default_factory=dict)
    labelled: list[int] = field(default_factory=list)  # the other templates
    # The literal query values' part of the cache key for a request without a query.
    no_query_values: tuple[bool, ...] = ()


# The operation and its URI labels; a plain tuple: a NamedTuple's Python-level __new__
# cost ~2k instructions a request.
RouteMatch = tuple[OperationModel, dict[str, str]]


def _compile(template: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    regex = ""
    labels: list[str] = []
    for part in re.split(r"(\{[^}]+\})", template):
        if part.startswith("{"):
            name = part[1:-1]
            greedy = name.endswith("+")
            # Interned, as the codec's plan interns wire names: its lookups of the
            # labels then match by identity.
            labels.append(sys.intern(name[:-1] if greedy else name))
            regex += "(.+)" if greedy else "([^/]+)"
        else:
            regex += re.escape(part)
    if not regex.endswith("(.+)"):
        regex = regex.rstrip("/") + "/?"
    return re.compile(regex + r"\Z"), tuple(labels)


class OperationRouter:
    def __init__(self, model: ServiceModel) -> None:
        self._routes: list[_Route] = []
        for name in model.operation_names:
            op = model.operation_model(name)
            uri = str(op.http.get("requestUri", "/"))
            path, _, query = uri.partition("?")
            pattern, labels = _compile(path)
            literal = tuple(
                (key, value if value else None)
                for key, value in parse_qsl(query, keep_blank_values=True)
            )
            # [required, optional] wire names of header and querystring members.
            headers: tuple[list[str], list[str]] = ([], [])
            queries: tuple[list[str], list[str]] = ([], [])
            shape = op.input_shape
            if shape is not None:
                required = set(shape.required_members)
                for member_name, member in shape.members.items():
                    location = member.serialization.get("location")
                    wire = str(member.serialization.get("name", member_name))
                    slot = 0 if member_name in required else 1
                    if location == "header":
                        headers[slot].append(wire.lower())
                    elif location == "querystring" and member.type_name != "map":
                        queries[slot].append(wire)
            self._routes.append(
                _Route(
                    op, str(op.http.get("method", "POST")), pattern, labels, literal,
                    tuple(headers[0]), tuple(queries[0]), tuple(headers[1]),
                    tuple(queries[1]), len(re.sub(r"\{[^}]+\}", "", path)),
                )
            )
        self._index: dict[str, _MethodIndex] = {}
        for route in self._routes:
            index = self._index.setdefault(route.method, _MethodIndex())
            if route.pattern not in index.patterns:
                index.patterns.append(route.pattern)
                template = str(route.operation.http.get("requestUri", "/")).partition("?")[0]
                if route.labels:
                    index.labelled.append(len(index.patterns) - 1)
                else:
                    index.literal.setdefault(template.rstrip("/"), []).append(
                        len(index.patterns) - 1)
            index.pattern_of.append(index.patterns.index(route.pattern))
            index.routes.append(route)
            for key, value in route.literal_query:
                if value is not None and (key, value) not in index.query_values:
                    index.query_values.append((key, value))
            index.query_names = index.query_names.union(
                [key for key, _ in route.literal_query], route.required_query,
                route.optional_query)
            index.header_names = index.header_names.union(route.required_headers,
                                                          route.optional_headers)
        for index in self._index.values():
            index.no_query_values = (False,) * len(index.query_values)

    def match(self, request: HttpRequest, path: str) -> RouteMatch | None:
        """The best operation for `request`, whose raw path is `path`, or None.

        The choice depends only on which path templates match, which query keys and
        headers the routes name are present (and literal query values equal), so it is
        cached under that key: a request costs one regex match per distinct template with
        labels of its method (S3: at most four) and one dict lookup for all the literal
        ones, not one match per operation.
        """
        index = self._index.get(request.method)
        if index is None:
            return None
        patterns = index.patterns
        found: list[re.Match[str] | None] = [None] * len(patterns)
        for position in index.labelled:
            found[position] = patterns[position].match(path)
        for position in index.literal.get(path[:-1] if path.endswith("/") else path, ()):
            found[position] = patterns[position].match(path)
        query = request.query
        key = (
            tuple(map(bool, found)),  # a match is true, None false
            index.query_names.intersection(query) if query else _NONE,
            tuple([query.get(k) == v for k, v in index.query_values]) if query
            else index.no_query_values,
            index.header_names.intersection(request.headers),
        )
        choice = index.cache.get(key)
        if choice is None:
            choice = self._choose(index, request, found)
            if len(index.cache) >= _CACHE_LIMIT:
                index.cache.clear()
            index.cache[key] = choice
        if choice < 0:
            return None
        route = index.routes[choice]
        matched = found[index.pattern_of[choice]]
        assert matched is not None
        # Built in C (zip, dict), not by a comprehension; most paths hold no escape. The
        # pattern has one group per label (see _compile), so zip needs no `strict=`
        # (a keyword argument zip parses at ~1k instructions a call).
        groups: Iterable[str] = matched.groups()
        if "%" in path:
            groups = map(unquote, groups)
        return route.operation, dict(zip(route.labels, groups))  # noqa: B905

    @staticmethod
    def _choose(
        index: _MethodIndex, request: HttpRequest, found: list[re.Match[str] | None]
    ) -> int:
        """The position of the most specific matching route in `index.routes`, or -1."""
        best: tuple[tuple[int, ...], int] | None = None
        for position, route in enumerate(index.routes):
            if found[index.pattern_of[position]] is None:
                continue
            if any(
                key not in request.query or (value is not None and request.query[key] != value)
                for key, value in route.literal_query
            ):
                continue
            if any(name not in request.headers for name in route.required_headers):
                continue
            if any(name not in request.query for name in route.required_query):
                continue
            score = (
                len(route.literal_query),
                len(route.required_headers) + len(route.required_query),
                route.literal_path,
                0 if route.operation.deprecated else 1,
                sum(name in request.headers for name in route.optional_headers)
                + sum(name in request.query for name in route.optional_query),
            )
            if best is None or score > best[0]:
                best = (score, position)
        return -1 if best is None else best[1]
