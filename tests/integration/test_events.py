"""Event-driven push (issue 18, item 2): S3 event notifications in, the object on the SFTP server at once.

Real sshd and SeaweedFS; the events are posted over HTTP to the intake's
route (``tests/support/events.py`` mounts it in a bare aiohttp app), or, for
the end-to-end test, sent by a SeaweedFS filer's own webhook.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from s3ferry.demo import servers as testbed
from s3ferry.engine.locks import pair_lock
from s3ferry.service.events import EventSettings, ObjectEvent
from support.events import TOKEN, EventApp, event_app, push_flows, seaweed_with_webhook
from support.sns import TOPIC, FakeSns

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def minio_event(bucket: str, key: str, etag: str, name: str = "s3:ObjectCreated:Put") -> dict[str, Any]:
    """What MinIO's webhook target posts (S3 event JSON, keys URL-encoded)."""
    return {"EventName": name, "Key": f"{bucket}/{key}", "Records": [{
        "eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "", "eventName": name,
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": key, "size": 1, "eTag": etag.strip('"'), "sequencer": "17E4"}}}]}


async def post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.post(url, data=json.dumps(body),
                                                                 headers=headers or {}) as answer:
        return answer.status, await answer.json()


@pytest.fixture
def outbox(tmp_path: Path, ssh: testbed.SshServer, s3: testbed.SeaweedServer, bucket: str,
           s3_env: dict[str, str]) -> tuple[list[Any], Path, Any]:
    inbox = ssh.root / f"events-{bucket}"
    inbox.mkdir()
    return push_flows(tmp_path, ssh, s3, bucket, inbox, extra='exclude = ["*.tmp"]'), inbox, s3.client()


def test_duplicates_deliver_once(outbox: tuple[list[Any], Path, Any], bucket: str) -> None:
    flows, inbox, client = outbox
    etag = client.put_object(Bucket=bucket, Key="out/a.csv", Body=b"one")["ETag"]

    async def scenario() -> EventApp:
        async with event_app(flows) as app:
            for _ in range(5):  # the same event five times, as at-least-once senders do
                status, answer = await post(app.url("minio"), minio_event(bucket, "out/a.csv", etag), AUTH)
                assert (status, answer) == (202, {"events": 1, "queued": 1}) or (status, answer["queued"]) == (202, 0)
            await app.dispatcher.idle()
            status, answer = await post(app.url("minio"), minio_event(bucket, "out/a.csv", etag), AUTH)
            assert (status, answer["queued"]) == (202, 0)  # seen through: not even a HEAD
            return app

    app = asyncio.run(scenario())
    assert app.copied() == ["a.csv"]
    assert (inbox / "a.csv").read_bytes() == b"one"


def test_reordered_events_leave_the_newest(outbox: tuple[list[Any], Path, Any], bucket: str) -> None:
    flows, inbox, client = outbox
    old = client.put_object(Bucket=bucket, Key="out/r.csv", Body=b"old version")["ETag"]
    new = client.put_object(Bucket=bucket, Key="out/r.csv", Body=b"new version")["ETag"]

    async def scenario() -> EventApp:
        async with event_app(flows) as app:
            assert app.dispatcher.submit([ObjectEvent(bucket, "out/r.csv", "created", new.strip('"'))]) == 1
            await app.dispatcher.idle()
            assert app.dispatcher.submit([ObjectEvent(bucket, "out/r.csv", "created", old.strip('"'))]) == 1
            await app.dispatcher.idle()
            return app

    app = asyncio.run(scenario())
    assert app.copied() == ["r.csv"]  # the late, older event was a no-op
    assert (inbox / "r.csv").read_bytes() == b"new version"


def test_lost_event_caught_up_by_the_scan(outbox: tuple[list[Any], Path, Any], bucket: str) -> None:
    flows, inbox, client = outbox
    client.put_object(Bucket=bucket, Key="out/lost.csv", Body=b"no event for me")
    client.put_object(Bucket=bucket, Key="out/seen.csv", Body=b"an event for me")

    async def scenario() -> int:
        async with event_app(flows) as app:
            app.dispatcher.submit([ObjectEvent(bucket, "out/seen.csv", "created")])
            await app.dispatcher.idle()
            assert not (inbox / "lost.csv").exists()
            code = await app.dispatcher.catch_up()
            app.dispatcher.submit([ObjectEvent(bucket, "out/lost.csv", "created")])  # its event, late
            await app.dispatcher.idle()
            assert app.copied() == ["seen.csv", "lost.csv"]  # the late event found it delivered: a no-op
            return code

    assert asyncio.run(scenario()) == 0
    assert (inbox / "lost.csv").read_bytes() == b"no event for me"
    assert (inbox / "seen.csv").read_bytes() == b"an event for me"


def test_unrelated_events_ignored(outbox: tuple[list[Any], Path, Any], bucket: str) -> None:
    flows, inbox, client = outbox
    for key in ("elsewhere/x.csv", "out/skip.tmp", "out/x.csv"):
        client.put_object(Bucket=bucket, Key=key, Body=b"x")

    async def scenario() -> list[tuple[int, dict[str, Any]]]:
        async with event_app(flows) as app:
            answers = [await post(app.url("minio"), minio_event(b, k, "0" * 32), AUTH) for b, k in (
                ("other-bucket", "out/x.csv"), (bucket, "elsewhere/x.csv"), (bucket, "out/skip.tmp"))]
            answers.append(await post(app.url("minio"), minio_event(bucket, "out/x.csv", "0" * 32,
                                                                    "s3:ObjectRemoved:Delete"), AUTH))
            await app.dispatcher.idle()
            return answers

    assert asyncio.run(scenario()) == [(202, {"events": 1, "queued": 0})] * 4
    assert list(inbox.iterdir()) == []


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-the-token"}])
def test_unauthenticated_refused(outbox: tuple[list[Any], Path, Any], bucket: str,
                                 headers: dict[str, str]) -> None:
    flows, inbox, client = outbox
    etag = client.put_object(Bucket=bucket, Key="out/a.csv", Body=b"one")["ETag"]

    async def scenario() -> list[int]:
        async with event_app(flows) as app:
            codes = [(await post(app.url(source), minio_event(bucket, "out/a.csv", etag), headers))[0]
                     for source in ("minio", "eventbridge", "seaweedfs")]
            await app.dispatcher.idle()
            assert app.copied() == []
            return codes

    assert asyncio.run(scenario()) == [401, 401, 401]
    assert list(inbox.iterdir()) == []


# -- SeaweedFS's own webhook, end to end --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def webhook_seaweed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    port = testbed.free_port()
    with seaweed_with_webhook(tmp_path_factory.mktemp("weed-events"), port) as server:
        yield server, port


async def arrival(path: Path, size: int, timeout: float) -> float:
    """When the file is complete at ``path`` (push renames it into place: its name means complete)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size == size:
            return time.monotonic()
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path.name} did not arrive within {timeout} s")


def test_seaweedfs_webhook_to_sftp_under_two_seconds(tmp_path: Path, ssh: testbed.SshServer,
                                                     webhook_seaweed: tuple[testbed.SeaweedServer, int],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    server, port = webhook_seaweed
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    client = server.client()
    client.create_bucket(Bucket=bucket)
    inbox = ssh.root / f"events-{bucket}"
    inbox.mkdir()
    flows = push_flows(tmp_path, ssh, server, bucket, inbox)
    body = bytes(range(256)) * 4096  # 1 MiB

    async def scenario() -> tuple[float, EventApp]:
        async with event_app(flows, port=port) as app:
            delays = []
            for name in ("warm.bin", "one.bin"):  # the first also opens what a running serve has open
                started = time.monotonic()
                await asyncio.to_thread(client.put_object, Bucket=bucket, Key=f"out/{name}", Body=body)
                delays.append(await arrival(inbox / name, len(body), 30) - started)
            await asyncio.sleep(1)  # the filer's later events (our own tags) must change nothing
            await app.dispatcher.idle()
            print(f"PutObject -> file complete on SFTP: {delays[0]:.3f} s (first), {delays[1]:.3f} s")
            return delays[1], app

    delay, app = asyncio.run(scenario())
    assert delay < 2.0
    assert sorted(app.copied()) == ["one.bin", "warm.bin"]
    assert (inbox / "one.bin").read_bytes() == body


# -- SNS: signatures, certificate hosts, subscription confirmation ------------------------------------------------


def s3_records(bucket: str, key: str) -> dict[str, Any]:
    """S3's own event JSON, as the Message of an SNS notification."""
    return {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                         "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 3}}}]}


def sns_settings(sns: FakeSns) -> EventSettings:
    return EventSettings(token=TOKEN, sns_topic_arns=(TOPIC,), sns_cert_hosts=("127.0.0.1",),
                         ssl_context=sns.client_ssl())


@pytest.mark.parametrize("version", ["1", "2"])
def test_sns_signed_notification_delivered(outbox: tuple[list[Any], Path, Any], bucket: str, tmp_path: Path,
                                           version: str) -> None:
    flows, inbox, client = outbox
    client.put_object(Bucket=bucket, Key="out/sns data.csv", Body=b"via sns")
    sns = FakeSns(tmp_path)

    async def scenario() -> list[int]:
        async with sns.serving(), event_app(flows, sns_settings(sns)) as app:
            key = "out/sns+data.csv"  # S3 URL-encodes keys in its events (a space is "+")
            codes = [(await post(app.url("sns"), sns.notification(s3_records(bucket, key), version)))[0]
                     for _ in range(2)]
            await app.dispatcher.idle()
            assert app.copied() == ["sns data.csv"]
            return codes

    assert asyncio.run(scenario()) == [202, 202]
    assert (inbox / "sns data.csv").read_bytes() == b"via sns"
    assert sns.cert_fetches == 1  # cached


def test_sns_refusals_deliver_nothing(outbox: tuple[list[Any], Path, Any], bucket: str, tmp_path: Path) -> None:
    flows, inbox, client = outbox
    client.put_object(Bucket=bucket, Key="out/a.csv", Body=b"one")
    client.put_object(Bucket=bucket, Key="out/b.csv", Body=b"two")
    sns = FakeSns(tmp_path)

    async def scenario() -> dict[str, int]:
        async with sns.serving(), event_app(flows, sns_settings(sns)) as app:
            good = sns.notification(s3_records(bucket, "out/a.csv"))
            tampered = {**good, "Message": json.dumps(s3_records(bucket, "out/b.csv"))}
            elsewhere = sns.notification(s3_records(bucket, "out/a.csv"), SigningCertURL=sns.url(
                "/SimpleNotificationService-test.pem", host="localhost"))
            plain_http = sns.notification(s3_records(bucket, "out/a.csv"), SigningCertURL=sns.url(
                "/SimpleNotificationService-test.pem").replace("https:", "http:"))
            unknown_topic = sns.notification(s3_records(bucket, "out/a.csv"),
                                             topic="arn:aws:sns:eu-west-1:111122223333:other")
            codes = {}
            for name, message in (("elsewhere", elsewhere), ("plain_http", plain_http),
                                  ("unknown_topic", unknown_topic)):
                codes[name] = (await post(app.url("sns"), message))[0]
            codes["fetches_before"] = sns.cert_fetches  # none of those fetched anything
            codes["tampered"] = (await post(app.url("sns"), tampered))[0]
            codes["unsigned"] = (await post(app.url("sns"), {**good, "Signature": ""}))[0]
            await app.dispatcher.idle()
            assert app.copied() == []
            return codes

    assert asyncio.run(scenario()) == {"elsewhere": 403, "plain_http": 403, "unknown_topic": 403,
                                       "fetches_before": 0, "tampered": 403, "unsigned": 403}
    assert list(inbox.iterdir()) == []


def test_sns_subscription_confirmed(outbox: tuple[list[Any], Path, Any], tmp_path: Path) -> None:
    flows, _, _ = outbox
    sns = FakeSns(tmp_path)

    async def scenario() -> tuple[int, int, int]:
        async with sns.serving(), event_app(flows, sns_settings(sns)) as app:
            good = (await post(app.url("sns"), sns.confirmation("tok-1")))[0]
            forged = sns.confirmation("tok-2")
            forged["SubscribeURL"] = sns.url("/confirm?Token=tok-3")  # not what was signed
            bad = (await post(app.url("sns"), forged))[0]
            elsewhere = sns.sign({**sns.confirmation("tok-4"),
                                  "SubscribeURL": sns.url("/confirm?Token=tok-4", host="localhost")})
            return good, bad, (await post(app.url("sns"), elsewhere))[0]

    assert asyncio.run(scenario()) == (202, 403, 403)
    assert sns.confirmations == ["tok-1"]


def test_eventbridge_api_destination_delivered(outbox: tuple[list[Any], Path, Any], bucket: str) -> None:
    flows, inbox, client = outbox
    etag = client.put_object(Bucket=bucket, Key="out/eb/b.csv", Body=b"from eventbridge")["ETag"]
    event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created", "source": "aws.s3",
             "account": "111122223333", "time": "2026-12-03T12:00:00Z", "region": "eu-west-1",
             "resources": [f"arn:aws:s3:::{bucket}"],
             "detail": {"version": "0", "bucket": {"name": bucket},
                        "object": {"key": "out/eb/b.csv", "size": 16, "etag": etag.strip('"'),
                                   "sequencer": "617f08299329d189"},
                        "request-id": "N4N7GDK58NMKJ12R", "requester": "111122223333", "reason": "PutObject"}}

    async def scenario() -> tuple[int, dict[str, Any]]:
        async with event_app(flows) as app:
            answer = await post(app.url("eventbridge"), event, AUTH)
            await app.dispatcher.idle()
            assert app.copied() == ["eb/b.csv"]
            return answer

    assert asyncio.run(scenario()) == (202, {"events": 1, "queued": 1})
    assert (inbox / "eb" / "b.csv").read_bytes() == b"from eventbridge"


def test_event_waits_while_the_flow_runs(outbox: tuple[list[Any], Path, Any], bucket: str, tmp_path: Path) -> None:
    flows, inbox, client = outbox
    client.put_object(Bucket=bucket, Key="out/w.csv", Body=b"after the scan")
    flow = flows[0]
    held = pair_lock(tmp_path / "state", str(flow.source), str(flow.destination), "push")  # as a scan holds it

    async def scenario() -> EventApp:
        assert await held.acquire()
        async with event_app(flows) as app:
            app.dispatcher.submit([ObjectEvent(bucket, "out/w.csv", "created")])
            await asyncio.sleep(1.5)
            assert not (inbox / "w.csv").exists() and app.copied() == []
            held.release()
            await app.dispatcher.idle()
            return app

    assert asyncio.run(scenario()).copied() == ["w.csv"]
    assert (inbox / "w.csv").read_bytes() == b"after the scan"
