"""S3's failures in s3ferry's terms: :func:`translate` is the one map from botocore's exceptions (and the
connection errors beneath them: ``OSError``, aiohttp's among them, and timeouts) to the s3ferry error tree,
applied where every S3 call crosses into botocore (:meth:`.client.S3Client.call_once`). The code sets say
which S3 error codes mean bad credentials, a retryable hiccup, or corrupted bytes."""

from __future__ import annotations

import asyncio

import botocore.exceptions as bexc

from s3ferry.core.errors import AuthError, NotFoundError, PermissionError_, S3FerryError, TransferError, UsageError
from s3ferry.core.urls import redact

_AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "InvalidClientTokenId"}
_RETRY_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling",
                "RequestTimeTooSkewed"}
DIGEST_CODES = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"}


def translate(exc: BaseException, where: str) -> S3FerryError:
    """Map a botocore exception to the s3ferry tree (used by every S3 call)."""
    if isinstance(exc, bexc.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = err.get("Message") or code or f"HTTP {status}"
        if code in ("NoSuchBucket",):
            return NotFoundError(f"bucket not found: {where}")
        if code in ("NoSuchKey", "404", "NotFound"):
            return NotFoundError(f"not found: {where}")
        if code == "SignatureDoesNotMatch":  # the access key exists: its secret is not the one signing
            return AuthError(f"S3 rejected the credentials for {where}: the request signature does not match; "
                             f"check the secret key (AWS_SECRET_ACCESS_KEY or the profile's aws_secret_access_key)",
                             code=code)
        if code in _AUTH_CODES:
            return AuthError(f"S3 rejected the credentials for {where}: {message}", code=code)
        if code in ("AccessDenied", "403", "AllAccessDisabled"):
            return PermissionError_(f"access denied: {where}")
        if code in DIGEST_CODES:
            return TransferError(f"S3 received corrupted bytes for {where} ({code})", code=code)
        if code == "NoSuchUpload":
            return TransferError(f"the multipart upload for {where} no longer exists", retryable=False, code=code)
        if code in _RETRY_CODES or status >= 500:
            return TransferError(f"S3 error at {where}: {code or status} {message}", code=code)
        return TransferError(f"S3 refused a request for {where}: {code or status} {message}", retryable=False,
                             code=code)
    if isinstance(exc, (bexc.NoCredentialsError, bexc.PartialCredentialsError)):
        return AuthError("no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or "
                         "--profile")
    if isinstance(exc, bexc.ProfileNotFound):
        return UsageError(f"AWS profile not found: {exc.kwargs.get('profile')}")
    if isinstance(exc, (bexc.EndpointConnectionError, bexc.ConnectionClosedError, bexc.ReadTimeoutError,
                        bexc.ConnectTimeoutError, OSError, asyncio.TimeoutError)):
        return TransferError(f"connection to S3 failed for {where}: {redact(str(exc))}")
    if isinstance(exc, (bexc.ParamValidationError, bexc.InvalidEndpointConfigurationError, ValueError)):
        return UsageError(f"invalid S3 request for {where}: {redact(str(exc))}")
    if isinstance(exc, bexc.BotoCoreError):
        return TransferError(f"S3 client error for {where}: {redact(str(exc))}")
    raise exc
