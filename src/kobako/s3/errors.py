"""S3's error codes, as AWS documents them (code, status, message)."""

from __future__ import annotations

from kobako.protocol.errors import AwsError


def no_such_bucket(bucket: str) -> AwsError:
    return AwsError("NoSuchBucket", "The specified bucket does not exist", 404,
                    fields={"BucketName": bucket})


def no_bucket_config(code: str, message: str, bucket: str) -> AwsError:
    """What reading a bucket configuration (CORS, policy...) never set answers."""
    return AwsError(code, message, 404, fields={"BucketName": bucket})


def malformed_xml() -> AwsError:
    return AwsError("MalformedXML", "The XML you provided was not well-formed or did not "
                    "validate against our published schema", 400)


def no_such_key(key: str) -> AwsError:
    return AwsError("NoSuchKey", "The specified key does not exist.", 404, fields={"Key": key})


def no_such_upload(upload_id: str) -> AwsError:
    return AwsError(
        "NoSuchUpload",
        "The specified upload does not exist. The upload ID may be invalid, or the upload "
        "may have been aborted or completed.",
        404,
        fields={"UploadId": upload_id},
    )


def access_denied() -> AwsError:
    return AwsError("AccessDenied", "Access Denied", 403)


def invalid_argument(message: str, name: str = "", value: str = "") -> AwsError:
    fields = {"ArgumentName": name, "ArgumentValue": value} if name else {}
    return AwsError("InvalidArgument", message, 400, fields=fields)


def precondition_failed(condition: str) -> AwsError:
    return AwsError("PreconditionFailed",
                    "At least one of the pre-conditions you specified did not hold", 412,
                    fields={"Condition": condition})


def bad_digest(what: str) -> AwsError:
    return AwsError("BadDigest", f"The {what} you specified did not match the calculated checksum.",
                    400)


def no_such_version(key: str, version_id: str) -> AwsError:
    return AwsError("NoSuchVersion", "The specified version does not exist.", 404,
                    fields={"Key": key, "VersionId": version_id})
