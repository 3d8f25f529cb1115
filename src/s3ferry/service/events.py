"""Event intake of ``s3ferry serve``: S3 event notifications in, typed :class:`ObjectEvent` records out.

``POST /api/v1/events/{source}`` takes four formats:

==============  ===============================================================
seaweedfs       the filer's ``[notification.webhook]`` (``weed scaffold
                -config=notification``): one JSON event per request,
                ``event_type`` and the filer path ``/buckets/<bucket>/<key>``
minio           MinIO's webhook target: the S3 event JSON (``Records``)
eventbridge     an EventBridge API destination: one event, ``detail-type``
                ``"Object Created"`` and its ``detail``
sns             an SNS HTTPS subscription: the SNS envelope (``Type`` =
                ``SubscriptionConfirmation`` / ``Notification`` /
                ``UnsubscribeConfirmation``) whose ``Message`` is S3 event JSON
==============  ===============================================================

Who may send: the first three carry ``Authorization: Bearer <token>``
(compared in constant time; SeaweedFS's ``bearer_token``, MinIO's
``auth_token``, an EventBridge connection's API-key header). SNS cannot send a
header of ours: its messages are checked by their signature (SignatureVersion
1, SHA1, or 2, SHA256; the canonical string of the AWS documentation), with
the signing certificate fetched only over https from a host of the allow-list
(default ``sns.<region>.amazonaws.com``) and cached; only topics in the
``sns_topic_arns`` list are taken, and a subscription is confirmed by a GET of
its SubscribeURL, again only on an allowed host. Refusals: 401 (no or wrong
token), 403 (bad signature, unknown topic, certificate or SubscribeURL from a
host not allowed: never fetched), 400 (not JSON, not the format), 404 (an
unknown source); nothing refused reaches the dispatcher.

Settings, in the ``[serve.events]`` table of the serve configuration
(:func:`settings_from_table`)::

    [serve.events]
    token_file = "/etc/s3ferry/events.token"   # or token_env (default S3FERRY_EVENTS_TOKEN)
    sns_topic_arns = ["arn:aws:sns:eu-west-1:111122223333:outbox"]
    sns_cert_hosts = ["sns.*.amazonaws.com"]    # "*" is one DNS label; this is the default
    flows = ["to-partner"]                      # push flows events may trigger; default: every push flow

``s3ferry serve`` uses its own token when the table names none (and no
``S3FERRY_EVENTS_TOKEN`` is set). Without a token the token-authenticated sources refuse everything (401);
without topics SNS refuses everything (403). Events never replace the flow's
schedule: its scan still runs (on start and on schedule) and delivers what an
event lost.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote_plus

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from yarl import URL

from s3ferry.core.errors import UsageError
from s3ferry.core.options import read_secret

log = logging.getLogger("s3ferry")

SOURCES = ("seaweedfs", "minio", "eventbridge", "sns")
DEFAULT_TOKEN_ENV = "S3FERRY_EVENTS_TOKEN"
DEFAULT_SNS_HOSTS = ("sns.*.amazonaws.com",)
#: a signing certificate is a few KiB; anything much larger is not one
_MAX_CERT_BYTES = 64 * 1024
_FETCH_TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass(frozen=True)
class ObjectEvent:
    """One object created or removed, whatever the format it came in."""

    bucket: str
    key: str
    kind: str  # "created" or "removed"
    etag: str | None = None  # without quotes
    version_id: str | None = None
    size: int | None = None
    #: orders events of one key where the sender says (S3's hex sequencer; SeaweedFS: nanoseconds)
    sequencer: str = ""


class EventRefused(Exception):
    """A request the intake does not take: its HTTP status and one line saying why (no secret in it)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class EventSettings:
    token: str | None = None
    sns_topic_arns: tuple[str, ...] = ()
    sns_cert_hosts: tuple[str, ...] = DEFAULT_SNS_HOSTS
    #: push flows events may trigger (names); empty: every push flow
    flows: tuple[str, ...] = ()
    #: how https fetches (certificate, SubscribeURL) verify the server; None: the system's trust store
    ssl_context: ssl.SSLContext | None = None


def settings_from_table(table: Mapping[str, Any], base: Path) -> EventSettings:
    """The ``[serve.events]`` table (see the module docstring); relative paths are relative to ``base``."""
    known = {"token_file", "token_env", "sns_topic_arns", "sns_cert_hosts", "flows"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise UsageError(f"serve.events: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    token_file = table.get("token_file")
    path = None if token_file is None else (base / Path(str(token_file)).expanduser())
    token = read_secret(path, str(table.get("token_env", DEFAULT_TOKEN_ENV)), "serve.events.token_file")
    return EventSettings(token=token, sns_topic_arns=_strings(table, "sns_topic_arns", ()),
                         sns_cert_hosts=_strings(table, "sns_cert_hosts", DEFAULT_SNS_HOSTS),
                         flows=_strings(table, "flows", ()))


def _strings(table: Mapping[str, Any], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = table.get(key, list(default))
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise UsageError(f"serve.events.{key} must be an array of strings")
    return tuple(value)


# -- parsers -----------------------------------------------------------------------------------------------------


def parse_seaweedfs(doc: Any) -> list[ObjectEvent]:
    """One filer webhook event: files under ``/buckets/<bucket>/`` only (not directories, the filer's own
    ``.system``, or multipart staging under ``.uploads``); a change of metadata only (our own tags) is none."""
    if not isinstance(doc, dict) or not isinstance(doc.get("event_type"), str):
        raise EventRefused(400, "not a SeaweedFS filer event (no event_type)")
    message = _dict(doc.get("message"))
    kind = doc["event_type"]
    if kind == "delete":
        old = _dict(message.get("old_entry"))
        path = str(doc.get("key", ""))
        return [e for e in [_seaweed_event(path, old, "removed")] if e is not None]
    if kind not in ("create", "update", "rename"):
        return []
    new = _dict(message.get("new_entry"))
    parent = message.get("new_parent_path")
    path = f"{str(parent).rstrip('/')}/{new.get('name', '')}" if parent and new.get("name") else str(doc.get("key"))
    etag = _seaweed_etag(new)
    if kind == "update" and etag is not None and _seaweed_etag(_dict(message.get("old_entry"))) == etag:
        return []  # the same bytes: tags or other metadata changed (our own delivery mark, for one)
    event = _seaweed_event(path, new, "created")
    return [event] if event is not None else []


def _seaweed_event(path: str, entry: dict[str, Any], kind: str) -> ObjectEvent | None:
    parts = path.split("/", 3)  # "", "buckets", bucket, key
    if len(parts) < 4 or parts[0] or parts[1] != "buckets" or not parts[3] or entry.get("is_directory"):
        return None
    bucket, key = parts[2], parts[3]
    if bucket.startswith(".") or key.startswith(".uploads/"):
        return None
    attributes = _dict(entry.get("attributes"))
    size = attributes.get("file_size")
    stamps = [c.get("modified_ts_ns", 0) for c in entry.get("chunks", []) if isinstance(c, dict)]
    stamp = max([s for s in stamps if isinstance(s, int)], default=0) or int(attributes.get("mtime", 0)) * 10**9
    return ObjectEvent(bucket, key, kind, _seaweed_etag(entry), None, size if isinstance(size, int) else None,
                       f"{stamp:020d}")


def _seaweed_etag(entry: dict[str, Any]) -> str | None:
    encoded = _dict(entry.get("extended")).get("Seaweed-X-Amz-ETag")
    if not isinstance(encoded, str):
        return None
    try:
        return base64.b64decode(encoded, validate=True).decode("ascii").strip('"')
    except (binascii.Error, UnicodeDecodeError):
        return None


def parse_s3_records(doc: Any) -> list[ObjectEvent]:
    """S3 event JSON (``Records``: MinIO's webhook, an SNS Message); S3's test event has none."""
    if not isinstance(doc, dict):
        raise EventRefused(400, "not S3 event JSON")
    if doc.get("Event") == "s3:TestEvent":
        return []
    records = doc.get("Records")
    if not isinstance(records, list):
        raise EventRefused(400, "not S3 event JSON (no Records)")
    events = []
    for record in records:
        record = _dict(record)
        name = str(record.get("eventName", "")).removeprefix("s3:")
        kind = _kind(name.split(":", 1)[0])
        s3 = _dict(record.get("s3"))
        bucket, obj = _dict(s3.get("bucket")).get("name"), _dict(s3.get("object"))
        if kind is None or not isinstance(bucket, str) or not isinstance(obj.get("key"), str):
            continue
        events.append(ObjectEvent(bucket, unquote_plus(obj["key"]), kind, _etag(obj.get("eTag")),
                                  _opt_str(obj.get("versionId")), _opt_int(obj.get("size")),
                                  str(obj.get("sequencer", ""))))
    return events


def parse_eventbridge(doc: Any) -> list[ObjectEvent]:
    """One EventBridge event from S3 (``source`` ``aws.s3``); other detail types are none of ours."""
    if not isinstance(doc, dict) or "detail-type" not in doc or not isinstance(doc.get("detail"), dict):
        raise EventRefused(400, "not an EventBridge event (no detail-type and detail)")
    kind = _kind(str(doc["detail-type"]).replace(" ", ""))
    detail = doc["detail"]
    bucket, obj = _dict(detail.get("bucket")).get("name"), _dict(detail.get("object"))
    if doc.get("source") != "aws.s3" or kind is None or not isinstance(bucket, str) \
            or not isinstance(obj.get("key"), str):
        return []
    return [ObjectEvent(bucket, obj["key"], kind, _etag(obj.get("etag")), _opt_str(obj.get("version-id")),
                        _opt_int(obj.get("size")), str(obj.get("sequencer", "")))]


def _kind(name: str) -> str | None:
    return {"ObjectCreated": "created", "ObjectRemoved": "removed", "ObjectDeleted": "removed"}.get(name)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _etag(value: Any) -> str | None:
    return value.strip('"') if isinstance(value, str) and value else None


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value and value != "null" else None


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# -- SNS ---------------------------------------------------------------------------------------------------------

_SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_SNS_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}


def sns_canonical(message: Mapping[str, Any]) -> bytes:
    """The string SNS signs: ``name\\nvalue\\n`` for each field of the message type, in order (Subject only
    when the message has one)."""
    fields = _SNS_FIELDS.get(str(message.get("Type")))
    if fields is None:
        raise EventRefused(400, "not an SNS message (Type)")
    out = []
    for name in fields:
        value = message.get(name)
        if value is None and name == "Subject":
            continue
        if not isinstance(value, str):
            raise EventRefused(400, f"SNS message without {name}")
        out.append(f"{name}\n{value}\n")
    return "".join(out).encode()


def host_allowed(url: str, patterns: Sequence[str]) -> bool:
    """Whether ``url`` is https on a host of the allow-list (``*`` stands for exactly one DNS label)."""
    try:
        parsed = URL(url)
    except ValueError:
        return False
    host = (parsed.host or "").lower()
    if parsed.scheme != "https" or not host or parsed.user is not None:
        return False
    for pattern in patterns:
        regex = r"\.".join("[a-z0-9-]+" if label == "*" else re.escape(label) for label in pattern.lower().split("."))
        if re.fullmatch(regex, host):
            return True
    return False


class SnsVerifier:
    """Checks SNS signatures; fetches and caches the signing certificates (only from allowed hosts)."""

    def __init__(self, settings: EventSettings) -> None:
        self.settings = settings
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._fetching = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self.settings.ssl_context or True)
            self._session = aiohttp.ClientSession(connector=connector, timeout=_FETCH_TIMEOUT)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def verify(self, message: Mapping[str, Any]) -> None:
        """Raise :class:`EventRefused` unless ``message`` is signed by SNS for an allowed topic."""
        if message.get("TopicArn") not in self.settings.sns_topic_arns:
            raise EventRefused(403, "SNS topic not allowed")
        algorithm = _SNS_HASHES.get(str(message.get("SignatureVersion")))
        if algorithm is None:
            raise EventRefused(403, "SNS SignatureVersion must be 1 or 2")
        url = message.get("SigningCertURL")
        if not isinstance(url, str) or not host_allowed(url, self.settings.sns_cert_hosts):
            raise EventRefused(403, "SNS signing certificate URL not on an allowed https host")
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        except binascii.Error as exc:
            raise EventRefused(403, "SNS signature is not base64") from exc
        key = await self._key(url)
        try:
            key.verify(signature, sns_canonical(message), padding.PKCS1v15(), algorithm())
        except InvalidSignature as exc:
            raise EventRefused(403, "SNS signature does not verify") from exc

    async def _key(self, url: str) -> rsa.RSAPublicKey:
        async with self._fetching:  # one fetch per certificate, even for a burst of messages
            if url not in self._keys:
                self._keys[url] = await self._fetch_key(url)
            return self._keys[url]

    async def _fetch_key(self, url: str) -> rsa.RSAPublicKey:
        try:
            async with self.session().get(url, allow_redirects=False) as answer:
                if answer.status != 200:
                    raise EventRefused(503, f"SNS signing certificate: HTTP {answer.status}")
                pem = await answer.content.read(_MAX_CERT_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise EventRefused(503, f"SNS signing certificate could not be fetched: {exc}") from exc
        if len(pem) > _MAX_CERT_BYTES:
            raise EventRefused(403, "SNS signing certificate is too large to be one")
        try:
            key = x509.load_pem_x509_certificate(pem).public_key()
        except ValueError as exc:
            raise EventRefused(403, "SNS signing certificate is not a PEM certificate") from exc
        if not isinstance(key, rsa.RSAPublicKey):
            raise EventRefused(403, "SNS signing certificate is not an RSA certificate")
        return key

    async def confirm(self, message: Mapping[str, Any]) -> None:
        """Confirm a subscription: GET its SubscribeURL (only on an allowed host)."""
        url = message.get("SubscribeURL")
        if not isinstance(url, str) or not host_allowed(url, self.settings.sns_cert_hosts):
            raise EventRefused(403, "SNS SubscribeURL not on an allowed https host")
        try:
            async with self.session().get(url, allow_redirects=False) as answer:
                if answer.status != 200:
                    raise EventRefused(502, f"SNS subscription confirmation: HTTP {answer.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise EventRefused(502, f"SNS subscription confirmation failed: {exc}") from exc
        log.info("SNS subscription to %s confirmed", message.get("TopicArn"))


# -- intake ------------------------------------------------------------------------------------------------------


class EventIntake:
    """Authenticates a request of one source and parses it into object events."""

    def __init__(self, settings: EventSettings) -> None:
        self.settings = settings
        self.sns = SnsVerifier(settings)

    async def close(self) -> None:
        await self.sns.close()

    async def receive(self, source: str, headers: Mapping[str, str], body: bytes) -> list[ObjectEvent]:
        if source not in SOURCES:
            raise EventRefused(404, f"unknown event source {source!r} (one of {', '.join(SOURCES)})")
        if source != "sns":
            self._check_token(headers.get("Authorization"))
        doc = _json(body)
        if source == "seaweedfs":
            return parse_seaweedfs(doc)
        if source == "minio":
            return parse_s3_records(doc)
        if source == "eventbridge":
            return parse_eventbridge(doc)
        return await self._sns(doc)

    def _check_token(self, header: str | None) -> None:
        token = self.settings.token
        scheme, _, given = (header or "").partition(" ")
        if token is None or scheme.lower() != "bearer" or not given:
            raise EventRefused(401, "a bearer token is required")
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise EventRefused(401, "wrong bearer token")

    async def _sns(self, doc: Any) -> list[ObjectEvent]:
        if not isinstance(doc, dict) or doc.get("Type") not in _SNS_FIELDS:
            raise EventRefused(400, "not an SNS message (Type)")
        await self.sns.verify(doc)
        if doc["Type"] == "SubscriptionConfirmation":
            await self.sns.confirm(doc)
            return []
        if doc["Type"] == "UnsubscribeConfirmation":
            log.warning("SNS: unsubscribed from %s", doc.get("TopicArn"))
            return []
        return parse_s3_records(_json(str(doc.get("Message", "")).encode()))


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventRefused(400, "the body is not JSON") from exc


# -- HTTP --------------------------------------------------------------------------------------------------------


class QueueFull(Exception):
    """The dispatcher cannot take more events now (the sender should retry; the scan is the safety net)."""


class Dispatch(Protocol):
    def submit(self, events: Sequence[ObjectEvent]) -> int:
        """Queue the events for the flows they match; the number of (event, flow) deliveries queued.
        Raises :class:`QueueFull`."""


def event_routes(intake: EventIntake, dispatcher: Dispatch) -> list[web.RouteDef]:
    """``POST /api/v1/events/{source}``: 202 with counts as soon as the events are queued (webhooks time
    out: the push itself happens after the answer)."""

    async def receive(request: web.Request) -> web.Response:
        source = request.match_info["source"]
        try:
            events = await intake.receive(source, request.headers, await request.read())
        except EventRefused as exc:
            log.warning("event from %s refused (%d): %s", request.remote, exc.status, exc.message)
            return web.json_response({"error": exc.message}, status=exc.status)
        try:
            queued = dispatcher.submit(events)
        except QueueFull:
            return web.json_response({"error": "event queue full, try again"}, status=503,
                                     headers={"Retry-After": "5"})
        return web.json_response({"events": len(events), "queued": queued}, status=202)

    return [web.post("/api/v1/events/{source}", receive)]


__all__ = ["DEFAULT_SNS_HOSTS", "SOURCES", "Dispatch", "EventIntake", "EventRefused", "EventSettings", "ObjectEvent",
           "QueueFull", "SnsVerifier", "event_routes", "host_allowed", "parse_eventbridge", "parse_s3_records",
           "parse_seaweedfs", "settings_from_table", "sns_canonical"]
