"""S3 Object Lock: bucket lock configuration, per-version retention and legal holds.

A version's lock lives in its stored headers under "Lock" ({"Mode", "RetainUntil",
"LegalHold"}), so it travels with the version row and costs nothing where unused.
The bucket's configuration is the bucket config "object_lock". AWS's rules: a
version under an unexpired retention or a legal hold cannot be deleted for good nor
have its retention shortened; GOVERNANCE gives way to a caller with
s3:BypassGovernanceRetention who sends x-amz-bypass-governance-retention, COMPLIANCE
to nobody. A plain DELETE (no version id) only adds a delete marker, always allowed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kobako.protocol.errors import AwsError
from kobako.s3 import errors
from kobako.s3.backend import S3Backend
from kobako.s3.policy import ALLOW, DENY, Principal, evaluate
from kobako.s3.store import Bucket, ObjectRecord, S3Store, now, versioning_status
from kobako.server.service import Handler, RequestContext

CONFIG = "object_lock"
MODES = ("GOVERNANCE", "COMPLIANCE")
HOLDS = ("ON", "OFF")
MAX_DAYS = 36500
MAX_YEARS = 100


def _missing_config() -> AwsError:
    return AwsError("InvalidRequest", "Bucket is missing Object Lock Configuration", 400)


def protected() -> AwsError:
    """What AWS answers a delete or a shortening that the lock forbids."""
    return AwsError("AccessDenied", "Access Denied because object protected by object lock.",
                    403)


def _no_lock_on_object() -> AwsError:
    return AwsError("NoSuchObjectLockConfiguration",
                    "The specified object does not have a ObjectLock configuration", 404)


def _future(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if value <= now():
        raise errors.invalid_argument("The retain until date must be in the future!")
    return value.astimezone(UTC)


def bucket_config(store: S3Store, bucket: str) -> dict[str, Any] | None:
    value = store.get_config(bucket, CONFIG)
    return dict(value) if value else None


def enable_on_create(store: S3Store, bucket: str) -> None:
    """CreateBucket with x-amz-bucket-object-lock-enabled: lock implies versioning."""
    store.enable_versioning(bucket, "Enabled")
    store.set_config(bucket, CONFIG, {"ObjectLockEnabled": "Enabled"})


def check_versioning_change(store: S3Store, bucket: str, status: str) -> None:
    """Versioning cannot be suspended on a bucket with Object Lock."""
    if status != "Enabled" and bucket_config(store, bucket) is not None:
        raise AwsError("InvalidBucketState", "An Object Lock configuration is present on this "
                       "bucket, so the versioning state cannot be changed.", 409)


def lock_of(record: ObjectRecord) -> dict[str, Any]:
    value = record.headers.get("Lock")
    return dict(value) if isinstance(value, dict) else {}


def retain_until(lock: dict[str, Any]) -> datetime | None:
    text = lock.get("RetainUntil")
    return datetime.fromisoformat(text) if text else None


def report(record: ObjectRecord) -> dict[str, Any]:
    """The x-amz-object-lock-* headers of GET and HEAD."""
    lock = lock_of(record)
    out: dict[str, Any] = {}
    if lock.get("Mode"):
        out["ObjectLockMode"] = lock["Mode"]
        out["ObjectLockRetainUntilDate"] = retain_until(lock)
    if lock.get("LegalHold"):
        out["ObjectLockLegalHoldStatus"] = lock["LegalHold"]
    return out


def _add_period(start: datetime, rule: dict[str, Any]) -> datetime:
    if rule.get("Days"):
        return start + timedelta(days=int(rule["Days"]))
    years = int(rule["Years"])
    try:
        return start.replace(year=start.year + years)
    except ValueError:  # 29 February into a common year
        return start.replace(year=start.year + years, day=28)


def lock_for_write(store: S3Store, bucket: str, params: dict[str, Any]) -> dict[str, Any]:
    """The lock a new version gets: the request's x-amz-object-lock-* headers, else the
    bucket's default retention. Empty where the version is not locked."""
    mode = params.get("ObjectLockMode")
    until = params.get("ObjectLockRetainUntilDate")
    hold = params.get("ObjectLockLegalHoldStatus")
    config = bucket_config(store, bucket)
    if config is None:
        if mode or until or hold:
            raise _missing_config()
        return {}
    lock: dict[str, Any] = {}
    if mode or until:
        if not (mode and until):
            raise errors.invalid_argument("x-amz-object-lock-retain-until-date and "
                                          "x-amz-object-lock-mode must both be supplied")
        if mode not in MODES:
            raise errors.invalid_argument("Unknown wormMode directive.",
                                          "x-amz-object-lock-mode", str(mode))
        lock = {"Mode": mode, "RetainUntil": _future(until).isoformat()}
    else:
        default = (config.get("Rule") or {}).get("DefaultRetention")
        if default:
            lock = {"Mode": default["Mode"],
                    "RetainUntil": _add_period(now(), default).isoformat()}
    if hold is not None:
        if hold not in HOLDS:
            raise errors.invalid_argument("Legal Hold must be either of 'ON' or 'OFF'",
                                          "x-amz-object-lock-legal-hold", str(hold))
        lock["LegalHold"] = hold
    return lock


def stamp(store: S3Store, bucket: str, params: dict[str, Any], headers: dict[str, Any]) -> None:
    """Put the new version's lock into the headers it is stored with."""
    headers.pop("Lock", None)
    lock = lock_for_write(store, bucket, params)
    if lock:
        headers["Lock"] = lock


def may_bypass(store: S3Store, ctx: RequestContext | None, bucket: str,
               params: dict[str, Any]) -> bool:
    """x-amz-bypass-governance-retention from a caller holding
    s3:BypassGovernanceRetention (the bucket owner does, unless a policy denies it)."""
    if not params.get("BypassGovernanceRetention") or ctx is None or ctx.anonymous:
        return False
    owner = store.get_bucket(bucket)
    if owner is None:
        return False
    key = params.get("Key")
    resource = f"arn:aws:s3:::{bucket}" + (f"/{key}" if key else "/*")
    decision = evaluate(store.get_config(bucket, "policy"),
                        Principal(ctx.account_id, ctx.credential.display_name),
                        "s3:BypassGovernanceRetention", resource, {})
    if decision == DENY:
        return False
    return ctx.account_id == owner.account_id or decision == ALLOW


def is_locked(record: ObjectRecord, bypass: bool, at: datetime | None = None) -> bool:
    """Whether deleting this version for good is forbidden at `at` (default: now)."""
    lock = lock_of(record)
    if lock.get("LegalHold") == "ON":
        return True
    until = retain_until(lock)
    if until is None or until <= (at or now()):
        return False
    return not (lock.get("Mode") == "GOVERNANCE" and bypass)


def check_delete(store: S3Store, bucket: str, key: str, version_id: str, bypass: bool) -> None:
    """Refuse DeleteObject/DeleteObjects of a locked version, as AWS does."""
    record = store.get_version(bucket, key, version_id)
    if record is not None and is_locked(record, bypass):
        raise protected()


def _version(s3: S3Backend, ctx: RequestContext, params: dict[str, Any]) -> ObjectRecord:
    bucket = s3.bucket(ctx, params["Bucket"])
    if bucket_config(s3.store, bucket.name) is None:
        raise _missing_config()
    return s3.object(ctx, bucket.name, params["Key"], params.get("VersionId"))


def _lock_holding(s3: S3Backend, ctx: RequestContext, params: dict[str, Any],
                  setting: str) -> dict[str, Any]:
    """The lock of the object version a GetObjectRetention or GetObjectLegalHold names,
    which must hold `setting` (Mode, LegalHold): AWS answers 404 for one it lacks."""
    lock = lock_of(_version(s3, ctx, params))
    if not lock.get(setting):
        raise _no_lock_on_object()
    return lock


def _store_lock(s3: S3Backend, record: ObjectRecord, lock: dict[str, Any]) -> None:
    headers = dict(record.headers)
    headers.pop("Lock", None)
    if lock:
        headers["Lock"] = lock
    if not s3.store.set_version_headers(record.bucket, record.key, record.version_id,
                                        headers):
        raise errors.no_such_key(record.key)


def _check_default_retention(rule: dict[str, Any]) -> dict[str, Any]:
    default = rule.get("DefaultRetention")
    if not isinstance(default, dict) or default.get("Mode") not in MODES:
        raise errors.malformed_xml()
    days, years = default.get("Days"), default.get("Years")
    chosen = days if days is not None else years
    if chosen is None or (days is not None and years is not None):
        raise errors.malformed_xml()
    period = int(chosen)
    if period <= 0:
        raise errors.invalid_argument("Default retention period must be a positive integer "
                                      "value.", "Days" if days is not None else "Years",
                                      str(period))
    if period > (MAX_DAYS if days is not None else MAX_YEARS):
        raise errors.invalid_argument("Default retention period is too large.",
                                      "Days" if days is not None else "Years", str(period))
    kept = {"Mode": default["Mode"]}
    kept["Days" if days is not None else "Years"] = period
    return {"DefaultRetention": kept}


def build_handlers(s3: S3Backend) -> dict[str, Handler]:
    async def put_object_lock_configuration(
        ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        bucket: Bucket = s3.bucket(ctx, params["Bucket"])
        config = params.get("ObjectLockConfiguration") or {}
        if config.get("ObjectLockEnabled") != "Enabled":
            raise errors.malformed_xml()
        if bucket_config(s3.store, bucket.name) is None \
                and versioning_status(s3.store, bucket.name) != "Enabled":
            raise AwsError("InvalidBucketState", "Versioning must be 'Enabled' on the bucket "
                           "to apply a Object Lock configuration", 409)
        stored: dict[str, Any] = {"ObjectLockEnabled": "Enabled"}
        if config.get("Rule"):
            stored["Rule"] = _check_default_retention(config["Rule"])
        s3.store.set_config(bucket.name, CONFIG, stored)
        return {}

    async def get_object_lock_configuration(
        ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        bucket = s3.bucket(ctx, params["Bucket"])
        config = bucket_config(s3.store, bucket.name)
        if config is None:
            raise errors.no_bucket_config(
                "ObjectLockConfigurationNotFoundError",
                "Object Lock configuration does not exist for this bucket", bucket.name)
        return {"ObjectLockConfiguration": config}

    async def put_object_retention(
        ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        record = _version(s3, ctx, params)
        retention = params.get("Retention") or {}
        mode, until = retention.get("Mode"), retention.get("RetainUntilDate")
        if (mode is None) != (until is None):
            raise errors.malformed_xml()
        if mode is not None and mode not in MODES:
            raise errors.malformed_xml()
        lock = lock_of(record)
        new_until = _future(until) if until is not None else None
        old_until = retain_until(lock)
        if old_until is not None and old_until > now():
            # Shortening, removing, or changing the mode overrides the lock: GOVERNANCE
            # lets only a bypassing caller do it (even GOVERNANCE -> COMPLIANCE).
            weaker = new_until is None or new_until < old_until or mode != lock.get("Mode")
            if weaker:
                bypass = may_bypass(s3.store, ctx, record.bucket, params)
                if lock.get("Mode") == "COMPLIANCE" or not bypass:
                    raise protected()
        lock.pop("Mode", None)
        lock.pop("RetainUntil", None)
        if mode is not None and new_until is not None:
            lock["Mode"], lock["RetainUntil"] = mode, new_until.isoformat()
        _store_lock(s3, record, lock)
        return {}

    async def get_object_retention(
        ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        lock = _lock_holding(s3, ctx, params, "Mode")
        return {"Retention": {"Mode": lock["Mode"], "RetainUntilDate": retain_until(lock)}}

    async def put_object_legal_hold(
        ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        record = _version(s3, ctx, params)
        status = (params.get("LegalHold") or {}).get("Status")
        if status not in HOLDS:
            raise errors.malformed_xml()
        lock = lock_of(record)
        lock["LegalHold"] = status
        _store_lock(s3, record, lock)
        return {}

    async def get_object_legal_hold(
        ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        lock = _lock_holding(s3, ctx, params, "LegalHold")
        return {"LegalHold": {"Status": lock["LegalHold"]}}

    return {
        "PutObjectLockConfiguration": put_object_lock_configuration,
        "GetObjectLockConfiguration": get_object_lock_configuration,
        "PutObjectRetention": put_object_retention,
        "GetObjectRetention": get_object_retention,
        "PutObjectLegalHold": put_object_legal_hold,
        "GetObjectLegalHold": get_object_legal_hold,
    }
