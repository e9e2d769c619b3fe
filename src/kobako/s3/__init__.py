"""Amazon S3: buckets, objects, listing and multipart uploads."""

from kobako.s3 import service

__all__ = ["service"]
