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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class RouteMatch:
    operation: OperationModel
    labels: dict[str, str]


def _compile(template: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    regex = ""
    labels: list[str] = []
    for part in re.split(r"(\{[^}]+\})", template):
        if part.startswith("{"):
            name = part[1:-1]
            if name.endswith("+"):
                labels.append(name[:-1])
                regex += "(.+)"
            else:
                labels.append(name)
                regex += "([^/]+)"
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

    def match(self, request: HttpRequest, path: str) -> RouteMatch | None:
        """The best operation for `request`, whose raw path is `path`, or None."""
        best: tuple[tuple[int, ...], _Route, re.Match[str]] | None = None
        for route in self._routes:
            if route.method != request.method:
                continue
            found = route.pattern.match(path)
            if found is None:
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
                best = (score, route, found)
        if best is None:
            return None
        _, route, found = best
        labels = {
            name: unquote(value)
            for name, value in zip(route.labels, found.groups(), strict=True)
        }
        return RouteMatch(route.operation, labels)
