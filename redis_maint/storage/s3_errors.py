"""botocore errors as StorageErrors that say what failed and what to check (never credentials)."""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from redis_maint.errors import StorageError
from redis_maint.redact import redact
from redis_maint.storage.base import ObjectNotFound

_CREDENTIALS_REJECTED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
_DENIED = {"AccessDenied", "AllAccessDisabled", "AccountProblem", "403", "Forbidden"}
_MISSING = {"NoSuchKey", "404", "NotFound"}


def s3_error(exc: Exception, action: str, where: str, endpoint: str | None = None) -> StorageError:
    at = f" (endpoint {endpoint})" if endpoint else ""
    if isinstance(exc, ClientError):
        return _client_error(exc, action, where, at)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return StorageError(
            f"cannot {action} {where}: no usable AWS credentials. Set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or give the host an IAM role"
        )
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ConnectionClosedError):
        return StorageError(
            f"cannot {action} {where}: S3 endpoint unreachable{at}: {redact(str(exc))}. "
            "Check the network and AWS_ENDPOINT_URL_S3 / AWS_REGION"
        )
    if isinstance(exc, ReadTimeoutError):
        return StorageError(f"cannot {action} {where}: S3 stopped answering{at}: {redact(str(exc))}")
    if isinstance(exc, BotoCoreError):
        return StorageError(f"cannot {action} {where}{at}: {redact(str(exc))}")
    return StorageError(f"cannot {action} {where}{at}: {type(exc).__name__}: {redact(str(exc))}")


def _client_error(exc: ClientError, action: str, where: str, at: str) -> StorageError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = redact(str(error.get("Message", "")))
    if code == "NoSuchBucket":
        bucket = where.removeprefix("s3://").split("/", 1)[0]
        return StorageError(
            f"cannot {action} {where}: bucket {bucket!r} does not exist{at}. "
            "Create it, or fix the bucket in REDIS_MAINT_TARGET__URI"
        )
    if code in _MISSING:
        return ObjectNotFound(f"{where} does not exist{at}")
    if code in _CREDENTIALS_REJECTED:
        return StorageError(
            f"cannot {action} {where}: S3 rejected the credentials ({code}){at}. "
            "Check the AWS access key, secret and session token in use"
        )
    if code in _DENIED:
        return StorageError(
            f"cannot {action} {where}: access denied ({code}: {message}){at}. Check that the IAM policy "
            "allows s3:PutObject, s3:GetObject, s3:ListBucket, s3:DeleteObject and s3:AbortMultipartUpload "
            "(and kms:GenerateDataKey/kms:Decrypt with aws:kms)"
        )
    if code in ("XAmzContentSHA256Mismatch", "InvalidRequest", "BadDigest", "NotImplemented"):
        return StorageError(
            f"cannot {action} {where}: the store refused the request ({code}: {message}){at}. "
            "S3-compatible stores may not support boto3's default checksums: set "
            "target.s3.request_checksum_calculation and response_checksum_validation to "
            "when_required (and checksum_algorithm to '' if it still fails)"
        )
    return StorageError(f"cannot {action} {where}: {code}: {message}{at}")
