"""CORS: bucket rules (Put/Get/DeleteBucketCors), preflight OPTIONS, response headers.

Rules are evaluated as S3 documents it: the first rule whose AllowedOrigins (one `*`
wildcard allowed), AllowedMethods and, for preflight, AllowedHeaders (case-insensitive,
wildcards) all match wins.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from kobako.protocol.codecs import XML_DECLARATION
from kobako.protocol.errors import AwsError
from kobako.protocol.http import HttpRequest, HttpResponse
from kobako.s3 import configs, errors
from kobako.s3.backend import S3Backend
from kobako.server.service import Handler, RequestContext

METHODS = {"GET", "PUT", "POST", "DELETE", "HEAD"}
MAX_RULES = 100


def _match(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value.lower(), pattern.lower().replace("[", "[[]"))


def matching_rule(
    rules: list[dict[str, Any]], origin: str, method: str, headers: list[str]
) -> dict[str, Any] | None:
    for rule in rules:
        if not any(_match(o, origin) for o in rule.get("AllowedOrigins", [])):
            continue
        if method not in rule.get("AllowedMethods", []):
            continue
        allowed = rule.get("AllowedHeaders", [])
        if all(any(_match(a, h) for a in allowed) for h in headers):
            return rule
    return None


def cors_headers(rule: dict[str, Any], origin: str, preflight: bool) -> list[tuple[str, str]]:
    wildcard = "*" in rule.get("AllowedOrigins", [])
    out = [("Access-Control-Allow-Origin", "*" if wildcard else origin),
           ("Access-Control-Allow-Methods", ", ".join(rule["AllowedMethods"])),
           ("Vary", "Origin, Access-Control-Request-Headers, Access-Control-Request-Method")]
    if not wildcard:
        out.append(("Access-Control-Allow-Credentials", "true"))
    if rule.get("ExposeHeaders"):
        out.append(("Access-Control-Expose-Headers", ", ".join(rule["ExposeHeaders"])))
    if preflight and rule.get("MaxAgeSeconds") is not None:
        out.append(("Access-Control-Max-Age", str(rule["MaxAgeSeconds"])))
    return out


def _bucket_of(path: str) -> str:
    return path.lstrip("/").split("/", 1)[0].split("?", 1)[0]


def _forbidden(message: str) -> HttpResponse:
    body = (f"{XML_DECLARATION}<Error><Code>AccessForbidden</Code>"
            f"<Message>{message}</Message></Error>")
    return HttpResponse(403, [("Content-Type", "application/xml")], body.encode())


class Cors:
    """The preflight and decorate hooks the S3 service plugs into the server."""

    def __init__(self, s3: S3Backend) -> None:
        self.s3 = s3

    def _rules(self, path: str) -> list[dict[str, Any]] | None:
        bucket = _bucket_of(path)
        if not bucket or self.s3.store.get_bucket(bucket) is None:
            return None
        rules = self.s3.store.get_config(bucket, "cors")
        return list(rules) if rules else None

    async def preflight(self, request: HttpRequest, path: str) -> HttpResponse | None:
        if request.method != "OPTIONS":
            return None
        origin = request.headers.get("origin")
        method = request.headers.get("access-control-request-method")
        if not origin or not method:
            return _forbidden("Insufficient information. Origin request header needed.")
        rules = self._rules(path)
        if rules is None:
            return _forbidden("CORSResponse: CORS is not enabled for this bucket.")
        wanted = [h.strip() for h in request.headers.get(
            "access-control-request-headers", "").split(",") if h.strip()]
        rule = matching_rule(rules, origin, method, wanted)
        if rule is None:
            return _forbidden(
                "CORSResponse: This CORS request is not allowed. This is usually because the "
                "evalution of Origin, request method / Access-Control-Request-Method or "
                "Access-Control-Request-Headers are not whitelisted by the resource's CORS "
                "spec.")
        headers = cors_headers(rule, origin, preflight=True)
        if wanted:
            headers.append(("Access-Control-Allow-Headers", ", ".join(wanted)))
        return HttpResponse(200, headers, b"")

    def decorate(self, request: HttpRequest, path: str, response: HttpResponse) -> None:
        origin = request.headers.get("origin")
        if not origin or request.method == "OPTIONS":
            return
        rules = self._rules(path)
        if rules is None:
            return
        rule = matching_rule(rules, origin, request.method, [])
        if rule is not None:
            response.headers.extend(cors_headers(rule, origin, preflight=False))


def _validated(params: dict[str, Any]) -> list[dict[str, Any]]:
    rules = (params.get("CORSConfiguration") or {}).get("CORSRules") or []
    if not rules or len(rules) > MAX_RULES:
        raise errors.malformed_xml()
    for rule in rules:
        for method in rule.get("AllowedMethods") or []:
            if method not in METHODS:
                raise AwsError("InvalidRequest",
                               f"Found unsupported HTTP method in CORS config. Unsupported "
                               f"method is {method}", 400)
        if not rule.get("AllowedMethods") or not rule.get("AllowedOrigins"):
            raise errors.malformed_xml()
        for origin in rule["AllowedOrigins"]:
            if origin.count("*") > 1:
                raise AwsError("InvalidRequest", f'AllowedOrigin "{origin}" can not have more '
                               "than one wildcard.", 400)
    return list(rules)


def build_handlers(s3: S3Backend) -> dict[str, Handler]:
    async def put_bucket_cors(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = s3.bucket(ctx, params["Bucket"])
        s3.store.set_config(bucket.name, "cors", _validated(params))
        return {}

    async def get_bucket_cors(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = s3.bucket(ctx, params["Bucket"])
        rules = s3.store.get_config(bucket.name, "cors")
        if not rules:
            raise errors.no_bucket_config("NoSuchCORSConfiguration",
                                          "The CORS configuration does not exist", bucket.name)
        return {"CORSRules": rules}

    return {
        "PutBucketCors": put_bucket_cors,
        "GetBucketCors": get_bucket_cors,
        "DeleteBucketCors": configs.deleter(s3, "cors"),
    }
