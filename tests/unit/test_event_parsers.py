"""The event intake's parsers and token check (service/events.py), on payloads as the senders write them.

The SeaweedFS payloads were captured from the real 4.48 filer webhook
(tests/unit/data/seaweedfs_webhook.json); the S3 Records, EventBridge and
SNS samples follow the AWS documentation's examples field for field.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from s3ferry.service.events import (
    EventIntake,
    EventRefused,
    EventSettings,
    ObjectEvent,
    host_allowed,
    parse_eventbridge,
    parse_s3_records,
    parse_seaweedfs,
    settings_from_table,
    sns_canonical,
)

DATA = Path(__file__).parent / "data"


def seaweed_events() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads((DATA / "seaweedfs_webhook.json").read_text())["events"]
    return events


def test_seaweedfs_files_only_with_etag_and_size() -> None:
    parsed = [e for doc in seaweed_events() for e in parse_seaweedfs(doc)]
    summary = [(e.bucket, e.key, e.kind, e.etag, e.size) for e in parsed]
    assert summary == [
        ("bucket1", "dir/a.txt", "created", "5d41402abc4b2a76b9719d911017c592", 5),
        ("bucket1", "dir/a.txt", "created", "6e809cbda0732ac4845916a59016f954", 6),  # overwritten: new bytes
        ("bucket1", "big.bin", "created", "b561f87202d04959e37588ee05cf5b10", 1048576),
        # the tag write on big.bin (same ETag) is no event; the multipart parts under .uploads/ are none either
        ("bucket1", "multi.bin", "created", "299342bb051b6852aa99fdc733b5d8f9-2", 5 * 1024 * 1024 + 10),
        ("bucket1", "dir/a.txt", "removed", "6e809cbda0732ac4845916a59016f954", 6),
    ]
    sequencers = [e.sequencer for e in parsed[:3]]
    assert sequencers == sorted(sequencers)  # later writes, later sequencers


def test_seaweedfs_rename_is_the_new_name() -> None:
    doc = next(d for d in seaweed_events() if d["key"] == "/buckets/bucket1/big.bin")
    renamed = {**doc, "event_type": "rename",
               "message": {**doc["message"], "new_parent_path": "/buckets/bucket1/moved"}}
    assert [e.key for e in parse_seaweedfs(renamed)] == ["moved/big.bin"]


def test_seaweedfs_not_an_event() -> None:
    with pytest.raises(EventRefused) as caught:
        parse_seaweedfs({"Records": []})
    assert caught.value.status == 400


S3_RECORDS = {"Records": [{
    "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-west-2", "eventTime": "2026-12-03T12:00:00.000Z",
    "eventName": "ObjectCreated:Put", "userIdentity": {"principalId": "AWS:EXAMPLE"},
    "requestParameters": {"sourceIPAddress": "1.2.3.4"},
    "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjsk"},
    "s3": {"s3SchemaVersion": "1.0", "configurationId": "outbox",
           "bucket": {"name": "outbox", "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                      "arn": "arn:aws:s3:::outbox"},
           "object": {"key": "daily/report+2026-12-03%281%29.csv", "size": 1024,
                      "eTag": "d41d8cd98f00b204e9800998ecf8427e", "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko",
                      "sequencer": "0055AED6DCD90281E5"}}}]}


def test_s3_records_aws_and_minio_names() -> None:
    [event] = parse_s3_records(S3_RECORDS)
    assert event == ObjectEvent("outbox", "daily/report 2026-12-03(1).csv", "created",
                                "d41d8cd98f00b204e9800998ecf8427e", "096fKKXTRTtl3on89fVO.nfljtsv6qko", 1024,
                                "0055AED6DCD90281E5")
    minio = json.loads(json.dumps(S3_RECORDS))
    minio["EventName"], minio["Key"] = "s3:ObjectCreated:Put", "outbox/daily/report 2026-12-03(1).csv"
    minio["Records"][0]["eventName"] = "s3:ObjectCreated:Put"
    minio["Records"][0]["s3"]["object"]["eTag"] = '"d41d8cd98f00b204e9800998ecf8427e"'
    assert parse_s3_records(minio) == [event]


def test_s3_records_others_ignored() -> None:
    tagging = json.loads(json.dumps(S3_RECORDS))
    tagging["Records"][0]["eventName"] = "s3:ObjectTagging:Put"  # our own mark on the object
    assert parse_s3_records(tagging) == []
    assert parse_s3_records({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "outbox"}) == []
    removed = json.loads(json.dumps(S3_RECORDS))
    removed["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    assert [e.kind for e in parse_s3_records(removed)] == ["removed"]


EVENTBRIDGE = {
    "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": "Object Created",
    "source": "aws.s3", "account": "111122223333", "time": "2021-11-12T00:00:00Z", "region": "ca-central-1",
    "resources": ["arn:aws:s3:::outbox"],
    "detail": {"version": "0", "bucket": {"name": "outbox"},
               "object": {"key": "daily/a.csv", "size": 5, "etag": "b1946ac92492d2347c6235b4d2611184",
                          "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", "sequencer": "617f08299329d189"},
               "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012", "source-ip-address": "1.2.3.4",
               "reason": "PutObject"}}


def test_eventbridge() -> None:
    assert parse_eventbridge(EVENTBRIDGE) == [
        ObjectEvent("outbox", "daily/a.csv", "created", "b1946ac92492d2347c6235b4d2611184",
                    "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", 5, "617f08299329d189")]
    assert parse_eventbridge({**EVENTBRIDGE, "detail-type": "Object Restore Completed"}) == []
    assert [e.kind for e in parse_eventbridge({**EVENTBRIDGE, "detail-type": "Object Deleted"})] == ["removed"]
    with pytest.raises(EventRefused):
        parse_eventbridge(S3_RECORDS)


def test_sns_canonical_strings() -> None:
    note = {"Type": "Notification", "MessageId": "m1", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": "{}",
            "Timestamp": "2026-12-03T12:00:00.000Z", "SignatureVersion": "1", "Signature": "x",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/c.pem", "UnsubscribeURL": "https://u"}
    assert sns_canonical(note) == (b"Message\n{}\nMessageId\nm1\nTimestamp\n2026-12-03T12:00:00.000Z\n"
                                   b"TopicArn\narn:aws:sns:us-east-1:1:t\nType\nNotification\n")
    assert b"Subject\nhello\nTimestamp" in sns_canonical({**note, "Subject": "hello"})
    confirm = {**note, "Type": "SubscriptionConfirmation", "Token": "tok", "SubscribeURL": "https://s"}
    assert sns_canonical(confirm) == (b"Message\n{}\nMessageId\nm1\nSubscribeURL\nhttps://s\nTimestamp\n"
                                      b"2026-12-03T12:00:00.000Z\nToken\ntok\nTopicArn\narn:aws:sns:us-east-1:1:t\n"
                                      b"Type\nSubscriptionConfirmation\n")


def test_cert_hosts() -> None:
    hosts = ("sns.*.amazonaws.com",)
    assert host_allowed("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem", hosts)
    assert not host_allowed("http://sns.eu-west-1.amazonaws.com/x.pem", hosts)  # https only
    assert not host_allowed("https://sns.evil.example.com.amazonaws.com/x.pem", hosts)  # one label
    assert not host_allowed("https://sns.eu-west-1.amazonaws.com.evil.example/x.pem", hosts)
    assert not host_allowed("https://user@sns.eu-west-1.amazonaws.com/x.pem", hosts)
    assert host_allowed("https://127.0.0.1:8443/c.pem", ("127.0.0.1",))


def receive(intake: EventIntake, source: str, body: Any, headers: dict[str, str]) -> list[ObjectEvent]:
    return asyncio.run(intake.receive(source, headers, json.dumps(body).encode()))


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic c2VjcmV0", "Bearer", "secret"])
def test_token_refused(header: str | None) -> None:
    intake = EventIntake(EventSettings(token="secret"))
    headers = {} if header is None else {"Authorization": header}
    with pytest.raises(EventRefused) as caught:
        receive(intake, "minio", S3_RECORDS, headers)
    assert caught.value.status == 401
    assert "secret" not in caught.value.message


def test_token_accepted_and_no_token_configured() -> None:
    intake = EventIntake(EventSettings(token="secret"))
    assert len(receive(intake, "eventbridge", EVENTBRIDGE, {"Authorization": "Bearer secret"})) == 1
    with pytest.raises(EventRefused) as caught:  # no token set up: nobody may send
        receive(EventIntake(EventSettings()), "seaweedfs", seaweed_events()[0], {"Authorization": "Bearer "})
    assert caught.value.status == 401


def test_bad_bodies_and_sources() -> None:
    intake = EventIntake(EventSettings(token="secret"))
    auth = {"Authorization": "Bearer secret"}
    with pytest.raises(EventRefused) as caught:
        asyncio.run(intake.receive("minio", auth, b"{not json"))
    assert caught.value.status == 400
    with pytest.raises(EventRefused) as caught:
        receive(intake, "gcs", {}, auth)
    assert caught.value.status == 404
    with pytest.raises(EventRefused) as caught:  # SNS: the topic is checked before anything is fetched
        receive(intake, "sns", {"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:1:other"}, {})
    assert caught.value.status == 403


def test_settings_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("from-file\n")
    settings = settings_from_table({"token_file": "token", "sns_topic_arns": ["arn:aws:sns:eu-west-1:1:t"]}, tmp_path)
    assert settings.token == "from-file" and settings.sns_cert_hosts == ("sns.*.amazonaws.com",)
    monkeypatch.setenv("S3FERRY_EVENTS_TOKEN", "from-env")
    assert settings_from_table({}, tmp_path).token == "from-env"
    with pytest.raises(Exception, match="unknown key 'token'"):
        settings_from_table({"token": "inline"}, tmp_path)
