"""S3 lifecycle: Put/Get/DeleteBucketLifecycleConfiguration and the sweeper applying it.

Rules are validated as AWS does and kept as the bucket config "lifecycle". A
background task (started by the S3 service's startup hook) sweeps every bucket with
rules: current objects past their Expiration are deleted (a delete marker in a
versioned bucket), noncurrent versions past NoncurrentVersionExpiration are removed
unless Object Lock protects them, lone delete markers go with
ExpiredObjectDeleteMarker, and stale multipart uploads are aborted.

As on AWS, an expiry instant is the object's creation (or noncurrency) time plus the
rule's days, rounded up to the next midnight UTC. Tests shift the sweeper's clock
with KOBAKO_LIFECYCLE_CLOCK_OFFSET_DAYS and shorten its period with
KOBAKO_LIFECYCLE_SWEEP_SECONDS (default: hourly).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from kobako.protocol.errors import AwsError
from kobako.protocol.timestamps import format_timestamp, parse_timestamp
from kobako.s3 import configs, errors, lock
from kobako.s3.backend import S3Backend
from kobako.s3.store import ObjectRecord, S3Store, now, versioning_status
from kobako.server.service import Handler, RequestContext

log = logging.getLogger(__name__)

CONFIG = "lifecycle"
DEFAULT_MIN_SIZE = "all_storage_classes_128K"
MAX_RULES = 1000
_PAGE = 1000


def _positive(value: Any, message: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise errors.invalid_argument(message)
    return value


def _check_filter(rule: dict[str, Any]) -> dict[str, Any]:
    """The rule's filter, as {"Prefix", "Tags", "Greater", "Less"} (legacy Prefix too)."""
    has_filter, has_prefix = "Filter" in rule, "Prefix" in rule
    if has_filter == has_prefix:
        raise errors.malformed_xml()
    if has_prefix:
        return {"Prefix": rule["Prefix"] or "", "Tags": []}
    raw = rule["Filter"] or {}
    if len(raw) > 1:
        raise errors.malformed_xml()
    source = raw.get("And") if "And" in raw else raw
    if not isinstance(source, dict):
        raise errors.malformed_xml()
    tags = list(source.get("Tags") or [])
    if raw.get("Tag"):
        tags = [raw["Tag"]]
    pairs = [(t.get("Key", ""), t.get("Value", "")) for t in tags]
    if len({k for k, _ in pairs}) != len(pairs):
        raise errors.invalid_argument("Duplicate Tag Keys are not allowed.")
    greater, less = source.get("ObjectSizeGreaterThan"), source.get("ObjectSizeLessThan")
    for value in (greater, less):
        if value is not None and value < 0:
            raise errors.invalid_argument("Object size must be a non-negative value.")
    if greater is not None and less is not None and greater >= less:
        raise AwsError("InvalidRequest", "ObjectSizeGreaterThan must be less than "
                       "ObjectSizeLessThan", 400)
    return {"Prefix": source.get("Prefix") or "", "Tags": pairs, "Greater": greater,
            "Less": less}


def _check_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """One rule, validated; returned in the form GetBucketLifecycleConfiguration gives."""
    if rule.get("Status") not in ("Enabled", "Disabled"):
        raise errors.malformed_xml()
    rule_id = rule.get("ID") or secrets.token_urlsafe(36)[:48]
    if len(rule_id) > 255:
        raise errors.invalid_argument("ID length should not exceed allowed limit of 255")
    match = _check_filter(rule)
    kept: dict[str, Any] = {"ID": rule_id, "Status": rule["Status"]}
    if "Prefix" in rule:
        kept["Prefix"] = rule["Prefix"] or ""
    else:
        kept["Filter"] = rule["Filter"] or {}
    acted = False
    expiration = rule.get("Expiration")
    if expiration:
        present = [n for n in ("Days", "Date", "ExpiredObjectDeleteMarker")
                   if expiration.get(n) is not None]
        if len(present) != 1:
            raise errors.malformed_xml()
        if "Days" in present:
            _positive(expiration["Days"], "'Days' for Expiration action must be a positive "
                      "integer")
            kept["Expiration"] = {"Days": expiration["Days"]}
        elif "Date" in present:
            kept["Expiration"] = {"Date": _midnight_date(expiration["Date"]).isoformat()}
        else:
            if match["Tags"]:
                raise AwsError("InvalidRequest", "ExpiredObjectDeleteMarker cannot be "
                               "specified with object tags", 400)
            kept["Expiration"] = {"ExpiredObjectDeleteMarker":
                                  bool(expiration["ExpiredObjectDeleteMarker"])}
        acted = True
    noncurrent = rule.get("NoncurrentVersionExpiration")
    if noncurrent:
        if noncurrent.get("NoncurrentDays") is None:
            raise errors.malformed_xml()
        out = {"NoncurrentDays": _positive(
            noncurrent["NoncurrentDays"], "'NoncurrentDays' for NoncurrentVersionExpiration "
            "action must be a positive integer")}
        if noncurrent.get("NewerNoncurrentVersions") is not None:
            out["NewerNoncurrentVersions"] = _positive(
                noncurrent["NewerNoncurrentVersions"], "'NewerNoncurrentVersions' for "
                "NoncurrentVersionExpiration action must be a positive integer")
        kept["NoncurrentVersionExpiration"] = out
        acted = True
    abort = rule.get("AbortIncompleteMultipartUpload")
    if abort:
        if match["Tags"] or match.get("Greater") is not None or match.get("Less") is not None:
            raise AwsError("InvalidRequest", "AbortIncompleteMultipartUpload cannot be "
                           "specified with Tags.", 400)
        kept["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": _positive(
            abort.get("DaysAfterInitiation"), "'DaysAfterInitiation' for "
            "AbortIncompleteMultipartUpload action must be a positive integer")}
        acted = True
    for name in ("Transitions", "NoncurrentVersionTransitions"):
        if rule.get(name):  # kept and reported; kobako has a single storage tier
            for step in rule[name]:
                if isinstance(step.get("Date"), datetime):
                    _midnight_date(step["Date"])  # AWS holds transition dates to midnight too
            kept[name] = [{k: v.isoformat() if isinstance(v, datetime) else v
                           for k, v in step.items()} for step in rule[name]]
            acted = True
    if not acted:
        raise AwsError("InvalidRequest", "At least one action needs to be specified in a "
                       "rule", 400)
    return kept


def _midnight_date(date: datetime) -> datetime:
    """A rule's Date, in UTC; S3 refuses one that is not at midnight GMT."""
    if date.tzinfo is None:
        date = date.replace(tzinfo=UTC)
    date = date.astimezone(UTC)
    if date.time() != time(0):
        raise errors.invalid_argument("'Date' must be at midnight GMT")
    return date


def check_configuration(config: dict[str, Any]) -> list[dict[str, Any]]:
    rules = config.get("Rules") or []
    if not rules or len(rules) > MAX_RULES:
        raise errors.malformed_xml()
    kept = [_check_rule(dict(rule)) for rule in rules]
    ids = [rule["ID"] for rule in kept]
    if len(set(ids)) != len(ids):
        raise errors.invalid_argument("Rule ID must be unique. Found same ID for more than "
                                      "one rule")
    return kept


def _for_wire(rule: dict[str, Any]) -> dict[str, Any]:
    """A stored rule as the model has it: dates back to timestamps."""
    out = dict(rule)
    if "Date" in out.get("Expiration", {}):
        out["Expiration"] = {"Date": parse_timestamp(out["Expiration"]["Date"])}
    if out.get("Transitions"):
        out["Transitions"] = [{k: parse_timestamp(v) if k == "Date" else v
                               for k, v in step.items()} for step in out["Transitions"]]
    return out


# ---------------------------------------------------------------- matching


@dataclass
class Rule:
    """A stored rule, ready to match objects against."""

    id: str
    prefix: str
    tags: list[tuple[str, str]]
    greater: int | None
    less: int | None
    days: int | None
    date: datetime | None
    expired_marker: bool
    noncurrent_days: int | None
    newer_noncurrent: int | None
    abort_days: int | None

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Rule:
        match = _check_filter(raw)
        expiration = raw.get("Expiration") or {}
        noncurrent = raw.get("NoncurrentVersionExpiration") or {}
        abort = raw.get("AbortIncompleteMultipartUpload") or {}
        date = expiration.get("Date")
        tags = [(str(k), str(v)) for k, v in match["Tags"]]
        return cls(raw["ID"], match["Prefix"], tags,
                   match.get("Greater"), match.get("Less"), expiration.get("Days"),
                   parse_timestamp(date) if date else None,
                   bool(expiration.get("ExpiredObjectDeleteMarker")),
                   noncurrent.get("NoncurrentDays"), noncurrent.get("NewerNoncurrentVersions"),
                   abort.get("DaysAfterInitiation"))

    def matches_key(self, key: str) -> bool:
        return key.startswith(self.prefix)

    def matches(self, record: ObjectRecord) -> bool:
        if not self.matches_key(record.key):
            return False
        if self.greater is not None and not record.size > self.greater:
            return False
        if self.less is not None and not record.size < self.less:
            return False
        if self.tags:
            have = {(str(k), str(v)) for k, v in record.headers.get("Tags", [])}
            return all(tag in have for tag in self.tags)
        return True

    def expires_at(self, created: datetime) -> datetime | None:
        """When a current object created at `created` expires under this rule."""
        if self.date is not None:
            return self.date
        if self.days is not None:
            return _midnight_after(created + timedelta(days=self.days))
        return None


def _midnight_after(moment: datetime) -> datetime:
    """AWS rounds expiry instants up to the next midnight UTC."""
    moment = moment.astimezone(UTC)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight if midnight == moment else midnight + timedelta(days=1)


def rules_of(store: S3Store, bucket: str) -> list[Rule]:
    """The bucket's enabled rules (none without a configuration)."""
    stored = store.get_config(bucket, CONFIG)
    if not stored:
        return []
    return [Rule.of(r) for r in stored["Rules"] if r.get("Status") == "Enabled"]


def expiration_header(store: S3Store, record: ObjectRecord) -> dict[str, Any]:
    """x-amz-expiration for a current object a rule will expire: the earliest rule."""
    if record.delete_marker or not store.get_config(record.bucket, CONFIG):
        return {}
    if record.version_id is not None:
        current = store.get_object(record.bucket, record.key)
        if current is None or current.version_id != record.version_id:
            return {}
    best: tuple[datetime, str] | None = None
    for rule in rules_of(store, record.bucket):
        if not rule.matches(record):
            continue
        when = rule.expires_at(record.last_modified)
        if when is not None and (best is None or when < best[0]):
            best = (when, rule.id)
    if best is None:
        return {}
    stamp = format_timestamp(best[0], "rfc822")
    return {"Expiration": f'expiry-date="{stamp}", rule-id="{best[1]}"'}


# ---------------------------------------------------------------- the sweeper


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        log.warning("ignoring %s=%r: not a number", name, os.environ.get(name))
        return default


class Sweeper:
    """Applies every bucket's lifecycle rules, every `interval` seconds, in a thread."""

    def __init__(self, store: S3Store, interval: float | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.interval = interval if interval is not None else _env_float(
            "KOBAKO_LIFECYCLE_SWEEP_SECONDS", 3600.0)
        offset = timedelta(days=_env_float("KOBAKO_LIFECYCLE_CLOCK_OFFSET_DAYS", 0.0))
        self.clock = clock or (lambda: now() + offset)
        self._task: asyncio.Task[None] | None = None
        self._sweeping: asyncio.Future[None] | None = None
        self._stopping = threading.Event()

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="s3-lifecycle")

    async def stop(self) -> None:
        """Cancel the loop and wait for a sweep in its thread to stop between buckets,
        so nothing touches the store once shutdown goes on."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._sweeping is not None:
            with contextlib.suppress(Exception):
                await self._sweeping
            self._sweeping = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self._sweeping = asyncio.ensure_future(asyncio.to_thread(self.sweep))
            try:
                await asyncio.shield(self._sweeping)
            except Exception:  # a bad sweep must not stop the next ones
                log.exception("S3 lifecycle sweep failed")

    def sweep(self) -> None:
        """One pass over every bucket that has lifecycle rules."""
        rows = self.store.db.query(
            "SELECT bucket FROM s3_bucket_config WHERE name = ? ORDER BY bucket", (CONFIG,))
        for row in rows:
            if self._stopping.is_set():
                return
            bucket = str(row["bucket"])
            rules = rules_of(self.store, bucket)
            if rules:
                self.sweep_bucket(bucket, rules, self.clock())

    def sweep_bucket(self, bucket: str, rules: list[Rule], at: datetime) -> None:
        self._expire_current(bucket, [r for r in rules if r.days or r.date], at)
        if versioning_status(self.store, bucket) is not None:
            self._expire_versions(bucket, rules, at)
        self._abort_uploads(bucket, [r for r in rules if r.abort_days], at)

    def _expire_current(self, bucket: str, rules: list[Rule], at: datetime) -> None:
        if not rules:
            return
        after = ""
        while True:
            page = self.store.list_objects(bucket, "", after, _PAGE)
            for record in page:
                due = [w for r in rules if r.matches(record)
                       and (w := r.expires_at(record.last_modified)) is not None]
                if due and min(due) <= at:
                    current = self.store.get_object(bucket, record.key)
                    if current is not None and current.version_id == record.version_id \
                            and current.last_modified == record.last_modified:
                        freed, _ = self.store.delete_current(bucket, record.key)
                        self.store.discard(freed)
            if len(page) < _PAGE:
                return
            after = page[-1].key

    def _expire_versions(self, bucket: str, rules: list[Rule], at: datetime) -> None:
        wanted = [r for r in rules if r.noncurrent_days or r.expired_marker or r.days]
        if not wanted:
            return
        group: list[ObjectRecord] = []
        after_key, after_seq = "", None
        while True:
            page = self.store.list_versions(bucket, "", after_key, after_seq, _PAGE)
            for seq, record in page:
                if group and group[0].key != record.key:
                    self._expire_key(bucket, group, wanted, at)
                    group = []
                group.append(record)
                after_key, after_seq = record.key, seq
            if len(page) < _PAGE:
                break
        if group:
            self._expire_key(bucket, group, wanted, at)

    def _expire_key(self, bucket: str, versions: list[ObjectRecord], rules: list[Rule],
                    at: datetime) -> None:
        """One key's versions, newest first: drop expired noncurrent ones, then a delete
        marker left alone (with ExpiredObjectDeleteMarker at once; with an Expiration in
        Days once it is that old, as AWS does)."""
        kept = [versions[0]]
        newer = 0  # noncurrent versions (not markers) newer than the one looked at
        for position in range(1, len(versions)):
            version = versions[position]
            since = versions[position - 1].last_modified
            expired = False
            for rule in rules:
                if rule.noncurrent_days is None or not rule.matches(version):
                    continue
                if rule.newer_noncurrent is not None and newer < rule.newer_noncurrent:
                    continue
                if _midnight_after(since + timedelta(days=rule.noncurrent_days)) <= at:
                    expired = True
            if expired and not lock.is_locked(version, bypass=False, at=at):
                self._drop(bucket, version)
            else:
                kept.append(version)
            if not version.delete_marker:
                newer += 1
        current = versions[0]
        if current.delete_marker and len(kept) == 1 and any(
                r.matches(current) and (r.expired_marker or (
                    r.days is not None
                    and _midnight_after(current.last_modified + timedelta(days=r.days)) <= at))
                for r in rules):
            self._drop(bucket, current)

    def _drop(self, bucket: str, version: ObjectRecord) -> None:
        _, freed = self.store.delete_version(bucket, version.key, version.version_id or "null")
        self.store.discard(freed)

    def _abort_uploads(self, bucket: str, rules: list[Rule], at: datetime) -> None:
        if not rules:
            return
        for upload in self.store.list_uploads(bucket, ""):
            for rule in rules:
                assert rule.abort_days is not None
                if rule.matches_key(upload.key) and _midnight_after(
                        upload.initiated + timedelta(days=rule.abort_days)) <= at:
                    self.store.discard(self.store.abort_upload(upload.upload_id) or [])
                    break


# ---------------------------------------------------------------- handlers


def build_handlers(s3: S3Backend) -> dict[str, Handler]:
    async def put_lifecycle(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = s3.bucket(ctx, params["Bucket"])
        rules = check_configuration(params.get("LifecycleConfiguration") or {})
        minimum = params.get("TransitionDefaultMinimumObjectSize") or DEFAULT_MIN_SIZE
        if minimum not in (DEFAULT_MIN_SIZE, "varies_by_storage_class"):
            raise errors.invalid_argument("Invalid TransitionDefaultMinimumObjectSize",
                                          "x-amz-transition-default-minimum-object-size",
                                          str(minimum))
        s3.store.set_config(bucket.name, CONFIG, {"Rules": rules, "MinimumSize": minimum})
        return {"TransitionDefaultMinimumObjectSize": minimum}

    async def get_lifecycle(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = s3.bucket(ctx, params["Bucket"])
        stored = s3.store.get_config(bucket.name, CONFIG)
        if not stored:
            raise errors.no_bucket_config("NoSuchLifecycleConfiguration",
                                          "The lifecycle configuration does not exist",
                                          bucket.name)
        return {"Rules": [_for_wire(r) for r in stored["Rules"]],
                "TransitionDefaultMinimumObjectSize": stored.get("MinimumSize",
                                                                 DEFAULT_MIN_SIZE)}

    return {
        "PutBucketLifecycleConfiguration": put_lifecycle,
        "GetBucketLifecycleConfiguration": get_lifecycle,
        "DeleteBucketLifecycle": configs.deleter(s3, CONFIG),
    }
