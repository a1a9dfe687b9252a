"""One contract for every backup target: the local directory and S3 (moto's server over HTTP)."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import timedelta

import boto3
import pytest

from redis_maint.errors import IntegrityError, StorageError
from redis_maint.storage import ObjectNotFound, download, hash_object, open_target
from redis_maint.storage.s3 import S3Options
from redis_maint.timeutil import utcnow

MIB = 1024 * 1024
BUCKET = "contract-bucket"
# Small parts so that a 12 MiB file is a real multipart upload.
S3_SMALL_PARTS = S3Options(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=2)


class Stop(Exception):
    pass


@pytest.fixture(params=["local", "s3"])
def target(request, tmp_path):
    if request.param == "local":
        t = open_target(str(tmp_path / "target"))
    else:
        request.getfixturevalue("s3")
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        t = open_target(f"s3://{BUCKET}/some/prefix", S3_SMALL_PARTS)
    yield t
    t.close()


def write(path, size: int, seed: int = 1) -> str:
    block = hashlib.sha256(str(seed).encode()).digest() * 4096  # 128 KiB, not all zeros
    with open(path, "wb") as fh:
        left = size
        while left:
            n = min(left, len(block))
            fh.write(block[:n])
            left -= n
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_put_file_round_trips_bytes_size_and_listing(target, tmp_path):
    src = tmp_path / "dump.rdb"
    sha = write(src, 300_000)
    target.put_file("inst/2025/01/31/b1/dump.rdb", src, sha256=sha)

    assert target.exists("inst/2025/01/31/b1/dump.rdb")
    info = target.head("inst/2025/01/31/b1/dump.rdb")
    assert info.size == 300_000
    assert info.sha256 in (None, sha)
    assert hash_object(target, "inst/2025/01/31/b1/dump.rdb") == (300_000, sha)
    assert [o.key for o in target.list("inst/")] == ["inst/2025/01/31/b1/dump.rdb"]


def test_multipart_sized_file_round_trips_through_download(target, tmp_path):
    src = tmp_path / "big.rdb"
    sha = write(src, 12 * MIB + 123, seed=2)
    sent = []
    target.put_file("i/big.rdb", src, sha256=sha, on_bytes=sent.append)

    size, digest = download(target, "i/big.rdb", tmp_path / "out" / "big.rdb")
    assert (size, digest) == (12 * MIB + 123, sha)
    assert (tmp_path / "out" / "big.rdb").read_bytes() == src.read_bytes()
    assert sum(sent) == 12 * MIB + 123


def test_missing_objects_raise_object_not_found(target, tmp_path):
    assert not target.exists("nope/manifest.json")
    with pytest.raises(ObjectNotFound):
        target.head("nope/manifest.json")
    with pytest.raises(ObjectNotFound):
        list(target.read_chunks("nope/manifest.json"))
    with pytest.raises(ObjectNotFound):
        download(target, "nope/manifest.json", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_list_is_scoped_to_a_directory_prefix(target):
    for key in ("a/1/x", "a/1/y", "a/10/x", "b/1/x"):
        target.put_bytes(key, key.encode())
    assert [o.key for o in target.list("a/1/")] == ["a/1/x", "a/1/y"]
    assert [o.key for o in target.list("a/")] == ["a/1/x", "a/1/y", "a/10/x"]
    assert len(list(target.list(""))) == 4


def test_delete_removes_keys_and_ignores_missing_ones(target):
    target.put_bytes("d/1", b"one")
    target.put_bytes("d/2", b"two")
    target.delete(["d/1", "d/missing"])
    assert [o.key for o in target.list("d/")] == ["d/2"]


def test_put_overwrites_a_key_whole(target):
    target.put_bytes("o/manifest.json", b"old contents, longer")
    target.put_bytes("o/manifest.json", b"new")
    assert b"".join(target.read_chunks("o/manifest.json")) == b"new"


def test_keys_that_escape_the_target_are_refused(target, tmp_path):
    src = tmp_path / "f"
    sha = write(src, 10)
    for bad in ("../x", "a/../../x", "/abs", "a//b", "a/", ""):
        with pytest.raises(StorageError, match="invalid object key"):
            target.put_file(bad, src, sha256=sha)


def test_cancelled_upload_leaves_nothing_under_the_key(target, tmp_path, request):
    src = tmp_path / "big.rdb"
    sha = write(src, 20 * MIB, seed=3)
    sent = []

    def checkpoint():
        if sum(sent) > 0:
            raise Stop("SIGTERM")

    with pytest.raises(Stop):
        target.put_file("c/dump.rdb", src, sha256=sha, checkpoint=checkpoint, on_bytes=sent.append)

    assert 0 < sum(sent) < 20 * MIB
    assert not target.exists("c/dump.rdb")
    assert list(target.list("")) == []
    if "s3" in request.node.callspec.id:
        uploads = boto3.client("s3").list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
        assert uploads == [], "the cancelled multipart upload must be aborted"
    else:
        assert [p.name for p in (tmp_path / "target").rglob("*") if p.is_file()] == []


def test_clean_partial_removes_stale_leftovers_of_killed_writes(target, tmp_path, request):
    if "s3" in request.node.callspec.id:
        # moto reports a fixed 2010 `Initiated` date, so only the removal is checked here.
        boto3.client("s3").create_multipart_upload(Bucket=BUCKET, Key="some/prefix/inst/x/dump.rdb")
        boto3.client("s3").create_multipart_upload(Bucket=BUCKET, Key="some/prefix/other/dump.rdb")
    else:
        leftover = tmp_path / "target" / "inst" / "x" / ".dump.rdb.tmp-deadbeef"
        leftover.parent.mkdir(parents=True)
        leftover.write_bytes(b"half")
        old = time.time() - 3 * 86400
        os.utime(leftover, (old, old))
        assert target.clean_partial("inst", older_than=utcnow() - timedelta(days=4)) == 0
    assert target.clean_partial("inst", older_than=utcnow() + timedelta(minutes=1)) == 1
    assert target.clean_partial("inst", older_than=utcnow() + timedelta(minutes=1)) == 0


def test_preflight_passes_on_a_reachable_target(target):
    target.preflight()
    assert list(target.list("")) == []


def test_check_writable_reports_the_target(target):
    assert target.uri.split("/")[-1] in target.check_writable()
    assert list(target.list("")) == []


def test_local_put_refuses_a_file_that_no_longer_matches_its_sha256(tmp_path):
    target = open_target(str(tmp_path / "t"))
    src = tmp_path / "f"
    write(src, 1000)
    with pytest.raises(IntegrityError, match="no longer matches"):
        target.put_file("k/f", src, sha256="0" * 64)
    assert list(target.list("")) == []
    assert [p for p in (tmp_path / "t").rglob("*") if p.is_file()] == []


def test_s3_stores_sha256_metadata_checksums_and_encryption(s3, tmp_path):
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    options = S3Options(server_side_encryption="AES256", storage_class="STANDARD_IA")
    target = open_target(f"s3://{BUCKET}/p", options)
    src = tmp_path / "f"
    sha = write(src, 2000)
    target.put_file("k/f", src, sha256=sha)
    head = boto3.client("s3").head_object(Bucket=BUCKET, Key="p/k/f", ChecksumMode="ENABLED")
    assert head["Metadata"] == {"sha256": sha}
    assert head["ServerSideEncryption"] == "AES256"
    assert head["StorageClass"] == "STANDARD_IA"
    assert head.get("ChecksumSHA256")


def test_s3_missing_bucket_is_named_in_the_error(s3, tmp_path):
    target = open_target("s3://no-such-bucket/p")
    src = tmp_path / "f"
    sha = write(src, 10)
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        target.put_file("k/f", src, sha256=sha)
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        target.preflight()
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        target.check_writable()


def test_s3_unreachable_endpoint_says_so_without_credentials(s3, monkeypatch, tmp_path):
    from tests.support.common import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    target = open_target("s3://some-bucket/p", S3Options(max_attempts=1, connect_timeout_s=1))
    src = tmp_path / "f"
    sha = write(src, 10)
    with pytest.raises(StorageError) as err:
        target.put_file("k/f", src, sha256=sha)
    assert "unreachable" in str(err.value)
    assert "testing-secret-key" not in str(err.value)


def test_delete_returns_no_keys_left_and_there_are_no_links_among_real_objects(target):
    target.put_bytes("l/1/a", b"a")
    target.put_bytes("l/1/b", b"b")
    assert target.links("") == []
    assert target.delete(["l/1/a", "l/1/b", "l/1/missing"]) == []
    assert list(target.list("")) == []


@pytest.fixture
def linked(tmp_path):
    """A local target whose `inst/b1` is a link to a directory, and `inst/b2/dump.rdb` a link to a file."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "dump.rdb").write_bytes(b"live data")
    (outside / ".x.tmp-0").write_bytes(b"someone's temp file")
    old = time.time() - 3 * 86400
    os.utime(outside / ".x.tmp-0", (old, old))
    t = open_target(str(tmp_path / "target"))
    t.put_bytes("inst/b2/manifest.json", b"{}")
    (tmp_path / "target" / "inst" / "b1").symlink_to(outside, target_is_directory=True)
    (tmp_path / "target" / "inst" / "b2" / "dump.rdb").symlink_to(outside / "dump.rdb")
    return t, outside


def test_local_listing_neither_lists_nor_enters_links_and_reports_them(linked):
    target, _outside = linked
    assert [o.key for o in target.list("")] == ["inst/b2/manifest.json"]
    assert list(target.list("inst/b1/")) == []
    assert target.links("") == ["inst/b1", "inst/b2/dump.rdb"]
    assert target.links("inst/b1/") == ["inst/b1"]


def test_local_reads_refuse_a_linked_object_or_directory(linked, tmp_path):
    target, _outside = linked
    for key in ("inst/b1/dump.rdb", "inst/b2/dump.rdb"):
        with pytest.raises(StorageError, match="is a symbolic link"):
            list(target.read_chunks(key))
        with pytest.raises(StorageError, match="is a symbolic link"):
            download(target, key, tmp_path / "dl" / "dump.rdb")
        with pytest.raises(StorageError, match="is a symbolic link"):
            target.head(key)
        assert not target.exists(key)
    assert not (tmp_path / "dl" / "dump.rdb").exists()


def test_local_delete_and_cleanup_leave_links_and_their_targets_alone(linked, tmp_path):
    target, outside = linked
    assert target.delete(["inst/b1/dump.rdb", "inst/b2/dump.rdb", "inst/b2/manifest.json"]) == [
        "inst/b1/dump.rdb",
        "inst/b2/dump.rdb",
    ]
    assert target.clean_partial("inst", older_than=utcnow()) == 0
    assert target.clean_partial("inst/b1", older_than=utcnow()) == 0
    assert sorted(p.name for p in outside.iterdir()) == [".x.tmp-0", "dump.rdb"]
    assert (outside / "dump.rdb").read_bytes() == b"live data"
    assert (tmp_path / "target" / "inst" / "b2" / "dump.rdb").is_symlink()
    assert not (tmp_path / "target" / "inst" / "b2" / "manifest.json").exists()
