"""A stand-in for Amazon SNS's side of an HTTPS subscription: a signing key and certificate served over
HTTPS from 127.0.0.1 (as SNS serves its own from sns.<region>.amazonaws.com), messages signed exactly as
SNS signs them, and a SubscribeURL that records the GETs it gets."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from s3ferry.demo import servers as testbed
from s3ferry.service.events import sns_canonical

TOPIC = "arn:aws:sns:eu-west-1:111122223333:outbox"


def _certificate(key: rsa.RSAPrivateKey, name: str, ip: str | None = None) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=1)))
    if ip is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                                        critical=False)
    return builder.sign(key, hashes.SHA256())


@dataclass
class FakeSns:
    """Signs messages; serves the signing certificate and the SubscribeURL over HTTPS on 127.0.0.1."""

    tmp: Path
    port: int = 0
    cert_fetches: int = 0
    confirmations: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.signing_pem = _certificate(self.signing_key, "sns.eu-west-1.amazonaws.com").public_bytes(
            serialization.Encoding.PEM)
        tls_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        tls_cert = _certificate(tls_key, "127.0.0.1", ip="127.0.0.1")
        (self.tmp / "tls.pem").write_bytes(tls_cert.public_bytes(serialization.Encoding.PEM))
        (self.tmp / "tls.key").write_bytes(tls_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    def client_ssl(self) -> ssl.SSLContext:
        """What the intake trusts for this server (its self-signed TLS certificate)."""
        return ssl.create_default_context(cafile=str(self.tmp / "tls.pem"))

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"

    def sign(self, message: dict[str, Any], version: str = "1") -> dict[str, Any]:
        message = {**message, "SignatureVersion": version, "SigningCertURL": message.get(
            "SigningCertURL", self.url("/SimpleNotificationService-test.pem"))}
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.signing_key.sign(sns_canonical(message), padding.PKCS1v15(), algorithm)
        return {**message, "Signature": base64.b64encode(signature).decode()}

    def notification(self, s3_event: dict[str, Any], version: str = "1", topic: str = TOPIC,
                     **fields: str) -> dict[str, Any]:
        return self.sign({"Type": "Notification", "MessageId": str(uuid.uuid4()), "TopicArn": topic,
                          "Subject": "Amazon S3 Notification", "Message": json.dumps(s3_event),
                          "Timestamp": "2026-12-03T12:00:00.000Z", "UnsubscribeURL": self.url("/unsubscribe"),
                          **fields}, version)

    def confirmation(self, token: str) -> dict[str, Any]:
        return self.sign({"Type": "SubscriptionConfirmation", "MessageId": str(uuid.uuid4()), "Token": token,
                          "TopicArn": TOPIC, "Message": "You have chosen to subscribe to the topic.",
                          "SubscribeURL": self.url(f"/confirm?Token={token}"),
                          "Timestamp": "2026-12-03T12:00:00.000Z"})

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[FakeSns]:
        async def cert(request: web.Request) -> web.Response:
            self.cert_fetches += 1
            return web.Response(body=self.signing_pem, content_type="application/x-pem-file")

        async def confirm(request: web.Request) -> web.Response:
            self.confirmations.append(request.query["Token"])
            return web.Response(text="<ConfirmSubscriptionResponse/>", content_type="text/xml")

        app = web.Application()
        app.add_routes([web.get("/SimpleNotificationService-test.pem", cert), web.get("/confirm", confirm)])
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(self.tmp / "tls.pem", self.tmp / "tls.key")
        runner = web.AppRunner(app)
        await runner.setup()
        self.port = testbed.free_port()
        await web.TCPSite(runner, "127.0.0.1", self.port, ssl_context=tls).start()
        try:
            yield self
        finally:
            await runner.cleanup()
