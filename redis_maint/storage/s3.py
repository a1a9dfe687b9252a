"""S3 (and S3-compatible stores) as a backup target, through boto3's transfer manager.

- Credentials, region and endpoint come only from the standard AWS sources (env,
  profiles, instance roles, AWS_ENDPOINT_URL_S3): nothing here reads or logs them.
- Files stream from disk in multipart parts (bounded memory). Each part carries a SHA256
  checksum that S3 verifies; our whole-file sha256 goes into the object's metadata.
- A failed or cancelled upload is cancelled in s3transfer, which aborts its multipart
  upload. A killed process cannot: `clean_partial` aborts stale ones, and an
  AbortIncompleteMultipartUpload lifecycle rule is the safety net (README).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from redis_maint.errors import StorageError
from redis_maint.storage.base import (
    CHUNK,
    Checkpoint,
    ObjectInfo,
    ObjectLock,
    ObjectNotFound,
    check_key,
    join,
)
from redis_maint.storage.s3_errors import s3_error
from redis_maint.timeutil import utcnow

log = logging.getLogger("redis_maint.storage.s3")

META_SHA256 = "sha256"  # x-amz-meta-sha256: our whole-file digest
POLL_S = 0.05


@dataclass(frozen=True)
class S3Options:
    server_side_encryption: str = ""  # "", "AES256" or "aws:kms"
    sse_kms_key_id: str = ""
    storage_class: str = ""
    checksum_algorithm: str = "SHA256"  # or "" for stores without flexible checksums
    request_checksum_calculation: str = "when_supported"
    response_checksum_validation: str = "when_supported"
    addressing_style: str = "auto"
    multipart_threshold: int = 8 * 1024 * 1024
    multipart_chunksize: int = 8 * 1024 * 1024
    max_concurrency: int = 10
    connect_timeout_s: float = 10
    read_timeout_s: float = 60
    max_attempts: int = 5


class S3Target:
    def __init__(self, uri: str, options: S3Options | None = None):
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.uri = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self.options = options or S3Options()
        self._client = None
        self._manager = None

    # -- plumbing -----------------------------------------------------------------------
    @property
    def client(self):
        if self._client is None:
            o = self.options
            config = Config(
                connect_timeout=o.connect_timeout_s,
                read_timeout=o.read_timeout_s,
                retries={"max_attempts": o.max_attempts, "mode": "standard"},
                s3={"addressing_style": o.addressing_style},
                request_checksum_calculation=o.request_checksum_calculation,
                response_checksum_validation=o.response_checksum_validation,
            )
            try:
                self._client = boto3.session.Session().client("s3", config=config)
            except BotoCoreError as exc:
                raise s3_error(exc, "create an S3 client for", self.uri) from None
        return self._client

    def _transfer(self):
        if self._manager is None:
            o = self.options
            config = TransferConfig(
                multipart_threshold=o.multipart_threshold,
                multipart_chunksize=o.multipart_chunksize,
                max_concurrency=o.max_concurrency,
                preferred_transfer_client="classic",
            )
            self._manager = create_transfer_manager(self.client, config)
        return self._manager

    def _key(self, key: str) -> str:
        return join(self.prefix, check_key(key))

    def _rel(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1 :] if self.prefix else full_key

    def uri_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def endpoint(self) -> str:
        return self.client.meta.endpoint_url

    def write_args(self, sha256: str | None = None) -> dict[str, Any]:
        o = self.options
        args: dict[str, Any] = {}
        if o.checksum_algorithm:
            args["ChecksumAlgorithm"] = o.checksum_algorithm
        if sha256:
            args["Metadata"] = {META_SHA256: sha256}
        if o.server_side_encryption:
            args["ServerSideEncryption"] = o.server_side_encryption
            if o.server_side_encryption == "aws:kms" and o.sse_kms_key_id:
                args["SSEKMSKeyId"] = o.sse_kms_key_id
        if o.storage_class:
            args["StorageClass"] = o.storage_class
        return args

    # -- the interface ------------------------------------------------------------------
    def put_file(
        self,
        key: str,
        path: Path,
        *,
        sha256: str,
        checkpoint: Checkpoint | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> ObjectInfo:
        full = self._key(key)
        subscribers = [_Progress(on_bytes)] if on_bytes else None
        try:
            future = self._transfer().upload(
                str(path), self.bucket, full, self.write_args(sha256), subscribers
            )
            _wait(future, checkpoint)
        except (ClientError, BotoCoreError) as exc:
            raise s3_error(exc, "upload", self.uri_for(key), self.endpoint()) from None
        # s3transfer returns nothing of the new object: its ETag and VersionId come from a HEAD.
        return self.head(key)

    def put_bytes(
        self, key: str, data: bytes, *, lock: ObjectLock | None = None, metadata: dict[str, str] | None = None
    ) -> ObjectInfo:
        args = self.write_args()
        if metadata:
            args["Metadata"] = dict(metadata)
        if lock is not None:
            args.update(ObjectLockMode=lock.mode, ObjectLockRetainUntilDate=lock.retain_until)
        try:
            r = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **args)
        except ClientError as exc:
            if lock is not None and _no_lock_configuration(exc):
                raise self._lock_missing(f"write {self.uri_for(key)} with Object Lock") from None
            raise s3_error(exc, "upload", self.uri_for(key), self.endpoint()) from None
        except BotoCoreError as exc:
            raise s3_error(exc, "upload", self.uri_for(key), self.endpoint()) from None
        return ObjectInfo(key, len(data), utcnow(), None, _etag(r), _version(r))

    def read_chunks(self, key: str) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except (ClientError, BotoCoreError) as exc:
            raise s3_error(exc, "download", self.uri_for(key), self.endpoint()) from None
        return self._stream(body, key)

    def _stream(self, body, key: str) -> Iterator[bytes]:
        try:
            with body:
                yield from body.iter_chunks(CHUNK)
        except (ClientError, BotoCoreError) as exc:
            raise s3_error(exc, "download", self.uri_for(key), self.endpoint()) from None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        full = join(self.prefix, prefix) + ("/" if prefix or self.prefix else "")
        full = "" if full == "/" else full
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
            for page in pages:
                for obj in page.get("Contents", []):
                    yield ObjectInfo(
                        self._rel(obj["Key"]), int(obj["Size"]), obj["LastModified"], etag=_etag(obj)
                    )
        except (ClientError, BotoCoreError) as exc:
            raise s3_error(exc, "list", f"s3://{self.bucket}/{full}", self.endpoint()) from None

    def links(self, prefix: str = "") -> list[str]:
        return []  # S3 has no symbolic links

    def delete(self, keys: Iterable[str]) -> list[str]:
        full = [self._key(k) for k in keys]
        for i in range(0, len(full), 1000):
            batch = {"Objects": [{"Key": k} for k in full[i : i + 1000]], "Quiet": True}
            try:
                reply = self.client.delete_objects(Bucket=self.bucket, Delete=batch)
            except (ClientError, BotoCoreError) as exc:
                raise s3_error(exc, "delete objects in", self.uri, self.endpoint()) from None
            if reply.get("Errors"):
                first = reply["Errors"][0]
                raise StorageError(
                    f"could not delete {len(reply['Errors'])} objects in {self.uri}, e.g. "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}; "
                    "check that the credentials allow s3:DeleteObject"
                )
        return []

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True

    def head(self, key: str) -> ObjectInfo:
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError) as exc:
            raise s3_error(exc, "read", self.uri_for(key), self.endpoint()) from None
        sha = (r.get("Metadata") or {}).get(META_SHA256)
        return ObjectInfo(key, int(r["ContentLength"]), r["LastModified"], sha, _etag(r), _version(r))

    def preflight(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                exc.response["Error"]["Code"] = "NoSuchBucket"  # HEAD has no body: name it ourselves
            raise s3_error(exc, "reach", self.uri, self.endpoint()) from None
        except BotoCoreError as exc:
            raise s3_error(exc, "reach", self.uri, self.endpoint()) from None

    def check_object_lock(self) -> None:
        try:
            reply = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as exc:
            if _no_lock_configuration(exc):
                raise self._lock_missing("use Object Lock in") from None
            raise s3_error(exc, "read the Object Lock configuration of", self.uri, self.endpoint()) from None
        except BotoCoreError as exc:
            raise s3_error(exc, "read the Object Lock configuration of", self.uri, self.endpoint()) from None
        if (reply.get("ObjectLockConfiguration") or {}).get("ObjectLockEnabled") != "Enabled":
            raise self._lock_missing("use Object Lock in")

    def _lock_missing(self, action: str) -> StorageError:
        return StorageError(
            f"cannot {action}: bucket {self.bucket!r} does not have Object Lock enabled. Enable it on the "
            "bucket (aws s3api put-object-lock-configuration, versioning on), or write to a bucket created "
            'with it; else set audit.object_lock_mode = "" and jobs.backup.object_lock = false'
        )

    def check_writable(self) -> str:
        probe = join(self.prefix, f".redis-maint-probe-{uuid.uuid4().hex}")
        self.preflight()
        try:
            self.client.put_object(Bucket=self.bucket, Key=probe, Body=b"probe", **self.write_args())
            self.client.delete_object(Bucket=self.bucket, Key=probe)
        except (ClientError, BotoCoreError) as exc:
            raise s3_error(exc, "write a probe object to", self.uri, self.endpoint()) from None
        return f"{self.uri} writable (endpoint {self.endpoint()})"

    def clean_partial(self, prefix: str, older_than: datetime) -> int:
        """Abort multipart uploads under `prefix` started before `older_than` (left by killed runs)."""
        full = join(self.prefix, prefix) + "/"
        aborted = 0
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=full
            )
            for page in pages:
                for up in page.get("Uploads", []):
                    if up["Initiated"] < older_than:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"]
                        )
                        aborted += 1
        except (ClientError, BotoCoreError) as exc:
            raise s3_error(exc, "abort stale multipart uploads in", self.uri, self.endpoint()) from None
        return aborted

    def close(self) -> None:
        if self._manager is not None:
            self._manager.shutdown()
            self._manager = None


def _no_lock_configuration(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "")), str(error.get("Message", ""))
    return code == "ObjectLockConfigurationNotFoundError" or (
        code == "InvalidRequest" and "objectlock" in message.replace(" ", "").lower()
    )


def _etag(reply: dict[str, Any]) -> str | None:
    """The ETag without its quotes (S3 sends `"…"`); listings, HEAD and PUT replies alike."""
    etag = reply.get("ETag")
    return etag.strip('"') if etag else None


def _version(reply: dict[str, Any]) -> str | None:
    """The VersionId of a versioned bucket's object; None when versioning was never on ("null")."""
    version = reply.get("VersionId")
    return version if version and version != "null" else None


class _Progress:
    """An s3transfer subscriber that forwards bytes sent."""

    def __init__(self, on_bytes: Callable[[int], None]):
        self.on_bytes = on_bytes

    def on_queued(self, future, **kwargs) -> None: ...

    def on_progress(self, future, bytes_transferred: int, **kwargs) -> None:
        self.on_bytes(bytes_transferred)

    def on_done(self, future, **kwargs) -> None: ...


def _wait(future, checkpoint: Checkpoint | None) -> None:
    """Wait for a transfer, cancelling it (so s3transfer aborts the multipart upload) if
    `checkpoint` raises: SIGTERM or the job's deadline."""
    while not future.done():
        if checkpoint is not None:
            try:
                checkpoint()
            except BaseException as exc:
                future.cancel()
                # result() waits for s3transfer's failure cleanups (AbortMultipartUpload);
                # the cancellation it raises is not the error to report.
                with contextlib.suppress(Exception):
                    future.result()
                raise exc from None
        time.sleep(POLL_S)
    future.result()
