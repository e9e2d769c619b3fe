"""S3 as a kobako service: its codec, handlers, and virtual-host addressing."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from kobako.config import Config
from kobako.protocol.codecs import RestXmlCodec
from kobako.protocol.http import HttpRequest, HttpResponse
from kobako.s3 import (
    access,
    buckets,
    cors,
    lifecycle,
    listing,
    lock,
    multipart,
    objects,
    post,
    publicaccess,
    tagging,
    versioning,
)
from kobako.s3.backend import S3Backend
from kobako.s3.identity import canonical_user_id
from kobako.s3.store import S3Store
from kobako.server.service import Service
from kobako.spec import service_model
from kobako.store.backends import open_blobs
from kobako.store.db import Database

# The root element S3 gives each XML response; botocore's model does not carry it.
ROOT_NAMES = {
    "ListBuckets": "ListAllMyBucketsResult",
    "ListObjects": "ListBucketResult",
    "ListObjectsV2": "ListBucketResult",
    "CreateMultipartUpload": "InitiateMultipartUploadResult",
    "CompleteMultipartUpload": "CompleteMultipartUploadResult",
    "ListParts": "ListPartsResult",
    "ListMultipartUploads": "ListMultipartUploadsResult",
    "DeleteObjects": "DeleteResult",
    "GetObjectTagging": "Tagging",
    "GetBucketTagging": "Tagging",
    "GetObjectAttributes": "GetObjectAttributesResponse",
    "GetBucketCors": "CORSConfiguration",
    "GetBucketVersioning": "VersioningConfiguration",
    "ListObjectVersions": "ListVersionsResult",
    "GetBucketAcl": "AccessControlPolicy",
    "GetObjectAcl": "AccessControlPolicy",
    "GetBucketLifecycleConfiguration": "LifecycleConfiguration",
}


def virtual_host_path(hostnames: list[str]) -> Callable[[HttpRequest], str]:
    """A path rewriter: `bucket.<hostname>/key` becomes `/bucket/key`."""
    suffixes = tuple("." + name for name in hostnames)
    known: dict[str, str | None] = {}  # Host header -> its bucket, or None

    def bucket_of(host_header: str) -> str | None:
        host = host_header.rsplit(":", 1)[0] if not host_header.startswith("[") \
            else host_header
        try:
            ipaddress.ip_address(host.strip("[]"))
            return None
        except ValueError:
            pass
        for suffix in suffixes:
            if host.endswith(suffix) and len(host) > len(suffix):
                return host[: -len(suffix)]
        return None

    def rewrite(request: HttpRequest) -> str:
        try:
            bucket = known[request.host]
        except KeyError:
            bucket = bucket_of(request.host)
            if len(known) >= 1024:  # Host comes from clients: keep the table bounded
                known.clear()
            known[request.host] = bucket
        if bucket is None:
            return request.raw_path
        return "/" + bucket + (request.raw_path if request.raw_path != "/" else "")

    return rewrite


def build(config: Config, db: Database, store: S3Store | None = None) -> Service:
    """S3 on `store` (opened here if not given: one per server, see `open_blobs`)."""
    store = store or S3Store(db, open_blobs(config, db), config.inline_bytes)
    users: dict[str, str] = {}
    for user in config.users.values():
        users.setdefault(canonical_user_id(user.account_id), user.display_name)
    backend = S3Backend(store, users)
    handlers = {}
    for module in (buckets, objects, listing, multipart, tagging, cors, versioning, access,
                   lock, lifecycle, publicaccess):
        handlers.update(module.build_handlers(backend))
    rewrite = virtual_host_path(config.hostnames)
    browser = cors.Cors(backend)
    uploads = post.PostUploads(backend, config.lookup)
    sweeper = lifecycle.Sweeper(store)

    async def early(request: HttpRequest, path: str) -> HttpResponse | None:
        """Answers that come before SigV4: CORS preflight and POST Object forms.

        Each hook answers one method only; asking just that one spares every other
        request two coroutines (4 KiB PUT: 4 lines of 1144)."""
        if request.method == "OPTIONS":
            return await browser.preflight(request, path)
        if request.method == "POST":
            return await uploads.handle(request, path)
        return None

    return Service(
        name="s3",
        codec=RestXmlCodec(service_model("s3"), root_names=ROOT_NAMES),
        handlers=handlers,
        signing_names=("s3",),
        streams_body=True,
        allows_anonymous=True,
        rewrite_path=rewrite,
        preflight=early,
        decorate=browser.decorate,
        request_id_headers=(b"x-amz-request-id",),  # as AWS's S3 answers
        startup=[sweeper.start],
        shutdown=[sweeper.stop],
    )
