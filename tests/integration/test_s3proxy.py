"""Self-test of the S3 fault proxy (tests/servers/s3proxy.py) against the real SeaweedFS."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import urllib.request
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from s3ferry.demo import servers as testbed
from servers.s3proxy import S3FaultProxy
from support.helpers import MiB, object_exists, object_sha256, uploads_for


def proxied(s3: testbed.SeaweedServer, proxy: S3FaultProxy) -> Any:
    """A boto3 client that talks to SeaweedFS through ``proxy`` and never retries.

    Note botocore's ``retries={"max_attempts": N}`` counts *retries* (N + 1
    attempts in all); ``total_max_attempts`` counts attempts.
    """
    return boto3.client(
        "s3", endpoint_url=proxy.url, aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key, region_name="us-east-1",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def multipart(client: Any, bucket: str, key: str, parts: list[bytes]) -> None:
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    done = []
    for number, data in enumerate(parts, start=1):
        etag = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data)["ETag"]
        done.append({"PartNumber": number, "ETag": etag})
    client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done})


def test_requests_pass_through_unchanged(s3: testbed.SeaweedServer, bucket: str) -> None:
    small = os.urandom(123_457)
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB)]
    # Characters that must reach the server exactly as the client signed them.
    odd_key = "dir/a b+c%d=e&f~ü;x,y*(z)'!@$.bin"  # (SeaweedFS itself folds "//" in keys)
    with S3FaultProxy(s3.s3_port) as proxy:
        client = proxied(s3, proxy)
        client.head_bucket(Bucket=bucket)
        client.put_object(Bucket=bucket, Key=odd_key, Body=small, ContentType="text/odd", Metadata={"k": "v"})
        got = client.get_object(Bucket=bucket, Key=odd_key)
        assert got["Body"].read() == small
        assert got["ContentType"] == "text/odd" and got["Metadata"] == {"k": "v"}
        ranged = client.get_object(Bucket=bucket, Key=odd_key, Range="bytes=10-19")
        assert ranged["Body"].read() == small[10:20]
        assert ranged["ResponseMetadata"]["HTTPStatusCode"] == 206
        head = client.head_object(Bucket=bucket, Key=odd_key)
        assert head["ContentLength"] == len(small)
        with pytest.raises(ClientError) as missing:
            client.head_object(Bucket=bucket, Key="missing")
        assert error_of(missing)[1] == 404

        multipart(client, bucket, "big.bin", parts)
        listing = client.list_objects_v2(Bucket=bucket)
        assert sorted(o["Key"] for o in listing["Contents"]) == sorted([odd_key, "big.bin"])

        upload_id = client.create_multipart_upload(Bucket=bucket, Key="aborted")["UploadId"]
        assert [u["UploadId"] for u in client.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [upload_id]
        assert client.list_parts(Bucket=bucket, Key="aborted", UploadId=upload_id).get("Parts", []) == []
        client.abort_multipart_upload(Bucket=bucket, Key="aborted", UploadId=upload_id)
        client.delete_object(Bucket=bucket, Key=odd_key)

    # What the server holds, seen directly.
    whole = b"".join(parts)
    assert object_sha256(s3, bucket, "big.bin") == hashlib.sha256(whole).hexdigest()
    assert not object_exists(s3, bucket, odd_key)
    assert uploads_for(s3, bucket) == []

    # Nothing was refused for a bad signature, and names and statuses are right.
    assert [op for op, status in proxy.requests if status >= 400] == ["HeadObject"]
    assert proxy.requests == [
        ("HeadBucket", 200), ("PutObject", 200), ("GetObject", 200), ("GetObject", 206),
        ("HeadObject", 200), ("HeadObject", 404),
        ("CreateMultipartUpload", 200), ("UploadPart", 200), ("UploadPart", 200), ("CompleteMultipartUpload", 200),
        ("ListObjects", 200), ("CreateMultipartUpload", 200), ("ListMultipartUploads", 200), ("ListParts", 200),
        ("AbortMultipartUpload", 204), ("DeleteObject", 204),
    ]
    assert proxy.count("UploadPart") == 2 and proxy.count("UploadPart", 200) == 2
    assert proxy.count("GetObject") == 2 and proxy.count("GetObject", 206) == 1
    assert proxy.upload_bytes == len(small) + len(whole)
    assert proxy.complete_seen.is_set()


def test_slowdown_everything(s3: testbed.SeaweedServer, bucket: str) -> None:
    with S3FaultProxy(s3.s3_port, slowdown_rate=1.0) as proxy:
        client = proxied(s3, proxy)
        with pytest.raises(ClientError) as put:
            client.put_object(Bucket=bucket, Key="k", Body=b"data")
        assert error_of(put) == ("SlowDown", 503)
        assert put.value.response["Error"]["Message"] == "Please reduce your request rate."
        upload_id = client.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
        with pytest.raises(ClientError) as part:
            client.upload_part(Bucket=bucket, Key="m", UploadId=upload_id, PartNumber=1, Body=b"x" * MiB)
        assert error_of(part) == ("SlowDown", 503)
        assert client.list_parts(Bucket=bucket, Key="m", UploadId=upload_id).get("Parts", []) == []
        # Raw look at the made-up answer.
        request = urllib.request.Request(f"{proxy.url}/{bucket}/raw", data=b"abc", method="PUT")
        with pytest.raises(urllib.error.HTTPError) as raw:
            urllib.request.urlopen(request, timeout=10)
        assert raw.value.code == 503
        assert raw.value.headers["Content-Type"] == "application/xml"
        assert b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>" in raw.value.read()
        client.abort_multipart_upload(Bucket=bucket, Key="m", UploadId=upload_id)
    assert not object_exists(s3, bucket, "k") and not object_exists(s3, bucket, "raw")
    assert proxy.count("PutObject", 503) == 2 and proxy.count("UploadPart", 503) == 1
    assert proxy.count("CreateMultipartUpload", 200) == 1 and proxy.count("ListParts", 200) == 1
    assert proxy.upload_bytes == 0


def slowdown_pattern(s3: testbed.SeaweedServer, bucket: str, seed: int, n: int) -> list[bool]:
    ok = []
    with S3FaultProxy(s3.s3_port, slowdown_rate=0.5, seed=seed) as proxy:
        client = proxied(s3, proxy)
        for i in range(n):
            try:
                client.put_object(Bucket=bucket, Key=f"s{seed}/{i}", Body=b"%d" % i)
                ok.append(True)
            except ClientError as exc:
                assert exc.response["Error"]["Code"] == "SlowDown"
                ok.append(False)
    assert proxy.count("PutObject", 200) == sum(ok) and proxy.count("PutObject", 503) == n - sum(ok)
    assert proxy.upload_bytes == sum(len(b"%d" % i) for i in range(n) if ok[i])
    return ok


def test_slowdown_half_is_seeded(s3: testbed.SeaweedServer, bucket: str) -> None:
    first = slowdown_pattern(s3, bucket, seed=7, n=40)
    assert 10 <= first.count(False) <= 30
    stored = s3.client().list_objects_v2(Bucket=bucket, Prefix="s7/")
    assert sorted(o["Key"] for o in stored.get("Contents", [])) == sorted(f"s7/{i}" for i in range(40) if first[i])
    s3.client().delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": o["Key"]} for o in stored.get("Contents", [])]})
    assert slowdown_pattern(s3, bucket, seed=7, n=40) == first


def test_fail_next_answers_once(s3: testbed.SeaweedServer, bucket: str) -> None:
    with S3FaultProxy(s3.s3_port) as proxy:
        client = proxied(s3, proxy)
        proxy.fail_next.append(("UploadPart", 500, "InternalError"))
        proxy.fail_next.append(("PutObject", 403, "AccessDenied"))
        client.head_bucket(Bucket=bucket)  # other operations are not touched
        upload_id = client.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
        with pytest.raises(ClientError) as first:
            client.upload_part(Bucket=bucket, Key="m", UploadId=upload_id, PartNumber=1, Body=b"a" * 1000)
        assert error_of(first) == ("InternalError", 500)
        assert proxy.fail_next == [("PutObject", 403, "AccessDenied")]
        etag = client.upload_part(Bucket=bucket, Key="m", UploadId=upload_id, PartNumber=1, Body=b"b" * 1000)["ETag"]
        with pytest.raises(ClientError) as denied:
            client.put_object(Bucket=bucket, Key="p", Body=b"p")
        assert error_of(denied) == ("AccessDenied", 403)
        assert proxy.fail_next == []
        client.put_object(Bucket=bucket, Key="p", Body=b"p")
        client.complete_multipart_upload(
            Bucket=bucket, Key="m", UploadId=upload_id, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert s3.client().get_object(Bucket=bucket, Key="m")["Body"].read() == b"b" * 1000
    assert proxy.requests == [
        ("HeadBucket", 200), ("CreateMultipartUpload", 200), ("UploadPart", 500), ("UploadPart", 200),
        ("PutObject", 403), ("PutObject", 200), ("CompleteMultipartUpload", 200),
    ]
    assert proxy.upload_bytes == 1001


def test_hold_complete_until_released(s3: testbed.SeaweedServer, bucket: str) -> None:
    with S3FaultProxy(s3.s3_port) as proxy:
        proxy.hold_complete = threading.Event()
        client = proxied(s3, proxy)
        upload_id = client.create_multipart_upload(Bucket=bucket, Key="held")["UploadId"]
        etag = client.upload_part(Bucket=bucket, Key="held", UploadId=upload_id, PartNumber=1, Body=b"h" * 100)["ETag"]
        outcome: list[object] = []

        def complete() -> None:
            try:
                outcome.append(proxied(s3, proxy).complete_multipart_upload(
                    Bucket=bucket, Key="held", UploadId=upload_id,
                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]}))
            except Exception as exc:  # noqa: BLE001 - reported below
                outcome.append(exc)

        worker = threading.Thread(target=complete, daemon=True)
        worker.start()
        assert proxy.complete_seen.wait(10)
        time.sleep(0.3)
        assert worker.is_alive() and outcome == []
        assert not object_exists(s3, bucket, "held")
        client.head_bucket(Bucket=bucket)  # the proxy still serves others meanwhile
        assert proxy.count("CompleteMultipartUpload") == 0
        proxy.hold_complete.set()
        worker.join(10)
        assert not worker.is_alive()
        assert isinstance(outcome[0], dict), outcome
    assert object_exists(s3, bucket, "held")
    assert proxy.count("CompleteMultipartUpload", 200) == 1


def test_exit_releases_a_held_complete(s3: testbed.SeaweedServer, bucket: str) -> None:
    proxy = S3FaultProxy(s3.s3_port)
    proxy.hold_complete = threading.Event()
    errors: list[BaseException] = []
    with proxy:
        client = proxied(s3, proxy)
        upload_id = client.create_multipart_upload(Bucket=bucket, Key="never")["UploadId"]

        def complete() -> None:
            try:
                client.complete_multipart_upload(
                    Bucket=bucket, Key="never", UploadId=upload_id, MultipartUpload={"Parts": []})
            except Exception as exc:  # noqa: BLE001 - checked below
                errors.append(exc)

        worker = threading.Thread(target=complete, daemon=True)
        worker.start()
        assert proxy.complete_seen.wait(10)
        started = time.monotonic()
    assert time.monotonic() - started < 5
    worker.join(10)
    assert errors and not object_exists(s3, bucket, "never")
    s3.client().abort_multipart_upload(Bucket=bucket, Key="never", UploadId=upload_id)


class RecordingServer:
    """A bare-socket HTTP/1.1 server that records the raw request it gets and answers a fixed response."""

    RESPONSE = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/x-up\r\nX-Up: one\r\nX-Up: two\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received = b""
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            while len(body) < length:
                body += conn.recv(65536)
            self.received = data[: len(head) + 4] + body
            conn.sendall(self.RESPONSE)
        self.listener.close()


def parse(raw: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    first, *lines = head.split(b"\r\n")
    return first, [tuple(line.split(b": ", 1)) for line in lines], body  # type: ignore[misc]


def test_forwards_request_bytes_exactly() -> None:
    upstream = RecordingServer()
    body = bytes(range(256)) * 40 + b"\r\n\r\n\x00"
    target = "/bucket/dir/a%20b%2Bc%2F%7E%C3%BC?partNumber=3&uploadId=a%2Bb%3D&x-id=UploadPart"
    headers = [
        (b"Host", b"127.0.0.1:1234"), (b"X-Amz-Date", b"20250101T000000Z"),
        (b"X-Amz-Content-SHA256", b"UNSIGNED-PAYLOAD"), (b"Authorization", b"AWS4-HMAC-SHA256 Credential=x"),
        (b"x-amz-meta-Twice", b"1"), (b"x-amz-meta-Twice", b"2"), (b"Content-MD5", b"bWQ1"),
        (b"Content-Length", str(len(body)).encode()),
    ]
    request = b"PUT " + target.encode() + b" HTTP/1.1\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    request += b"Connection: keep-alive\r\n\r\n" + body
    with S3FaultProxy(upstream.port) as proxy, \
            socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while not answer.endswith(b"de"):
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
    upstream.thread.join(10)
    first, got_headers, got_body = parse(upstream.received)
    assert first == b"PUT " + target.encode() + b" HTTP/1.1"
    assert got_body == body
    # Every header as sent (Host included); only the hop-by-hop Connection differs.
    assert [h for h in got_headers if h[0].lower() != b"connection"] == headers
    status, answer_headers, answer_body = parse(answer)
    assert status == b"HTTP/1.1 200 OK" and answer_body == b"abcde"
    names = [k.lower() for k, _ in answer_headers]
    assert (b"x-up", b"one") in [(k.lower(), v) for k, v in answer_headers]
    assert (b"x-up", b"two") in [(k.lower(), v) for k, v in answer_headers]
    assert b"transfer-encoding" not in names and (b"Content-Length", b"5") in answer_headers
    assert (b"Content-Type", b"text/x-up") in answer_headers
    assert proxy.requests == [("UploadPart", 200)] and proxy.upload_bytes == len(body)


def test_parallel_uploads(s3: testbed.SeaweedServer, bucket: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    blobs = {f"p/{i}": os.urandom(256 * 1024 + i) for i in range(32)}
    with S3FaultProxy(s3.s3_port) as proxy:
        client = proxied(s3, proxy)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda kv: client.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), blobs.items()))
    assert proxy.count("PutObject", 200) == 32 and len(proxy.requests) == 32
    assert proxy.upload_bytes == sum(len(b) for b in blobs.values())
    direct = s3.client()
    assert all(direct.get_object(Bucket=bucket, Key=k)["Body"].read() == v for k, v in blobs.items())
