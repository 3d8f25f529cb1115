"""The S3 client both ends share: :class:`S3Client` (one aiobotocore client, its calls retried and their
errors translated by :mod:`.errors`, prefix listings), which :class:`~.sink.S3Sink` and
:class:`~.source.S3Source` extend.

Configuration follows the AWS CLI: the credential chain, ``AWS_PROFILE``,
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3``, region from env or config;
``--endpoint-url``, ``--profile`` and ``--region`` override them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import botocore.exceptions as bexc
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession

from s3ferry.backends.s3.errors import translate
from s3ferry.backends.s3.objects import epoch
from s3ferry.core.errors import AuthError, NotFoundError, PermissionError_
from s3ferry.core.options import S3Options
from s3ferry.core.storage import Entry
from s3ferry.core.urls import Location
from s3ferry.engine.retry import RetryPolicy

log = logging.getLogger("s3ferry")


class S3Client:
    """One aiobotocore client (connection pool) with errors translated and retries.

    A :meth:`child` for another key shares its parent's client; only the
    parent closes it.
    """

    def __init__(self, location: Location, options: S3Options, pool_size: int = 10,
                 retry: RetryPolicy | None = None, parent: S3Client | None = None) -> None:
        self.location = location
        self.options = options
        self.retry = retry or RetryPolicy()
        self._pool_size = pool_size
        self._parent = parent
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._echoes: bool | None = None  # see returns_checksums

    @property
    def where(self) -> str:
        return str(self.location)

    async def client(self) -> Any:
        if self._parent is not None:
            return await self._parent.client()
        if self._client is None:
            try:
                session = AioSession(profile=self.options.profile)
                config = AioConfig(
                    max_pool_connections=self._pool_size,
                    # One retry policy for everything (ours): it backs off with
                    # jitter and lets SlowDown lower the upload concurrency.
                    retries={"mode": "standard", "total_max_attempts": 1},
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    connect_timeout=30,
                    read_timeout=120,
                    s3=self._s3_config(),
                )
                verify = str(self.options.ca_file) if self.options.ca_file else None
                self._client = await self._stack.enter_async_context(
                    session.create_client(
                        "s3", endpoint_url=self.options.endpoint_url, region_name=self.options.region, config=config,
                        verify=verify,
                    )
                )
                for operation in ("UploadPart", "PutObject"):
                    self._client.meta.events.register(f"before-call.s3.{operation}", _trailer_for_streamed_parts)
            except (bexc.BotoCoreError, ValueError) as exc:
                raise translate(exc, self.where) from exc
        return self._client

    def _s3_config(self) -> dict[str, Any]:
        signing = self.options.payload_signing()
        return {} if signing is None else {"payload_signing_enabled": signing}

    async def call_once(self, method: str, **kwargs: Any) -> Any:
        """One S3 API call with its errors translated, not retried (the caller retries)."""
        client = await self.client()
        try:
            return await getattr(client, method)(**kwargs)
        except (TimeoutError, bexc.BotoCoreError, bexc.ClientError, OSError) as exc:
            error = translate(exc, self.where)
            if method.startswith("head_") and isinstance(error, PermissionError_):
                error = await self._why_forbidden(client, kwargs) or error
            raise error from exc

    async def _why_forbidden(self, client: Any, kwargs: dict[str, Any]) -> AuthError | None:
        """A HEAD answer has no body, so its 403 cannot say why: a wrong secret key looks like "access denied".
        A one-byte GET of the same key (or of a key that may not exist, for a bucket) answers with the code;
        only a credentials code (SignatureDoesNotMatch, InvalidAccessKeyId, ...) changes the verdict."""
        try:
            answer = await client.get_object(Bucket=kwargs["Bucket"], Key=kwargs.get("Key") or "s3ferry-probe",
                                             Range="bytes=0-0")
        except bexc.ClientError as exc:
            error = translate(exc, self.where)
            return error if isinstance(error, AuthError) else None
        except (TimeoutError, bexc.BotoCoreError, OSError) as exc:
            log.debug("asking why S3 refused a HEAD request failed too: %s", exc)
            return None
        answer["Body"].close()
        return None

    async def call(self, method: str, **kwargs: Any) -> Any:
        """One S3 API call, retried on retryable errors."""
        return await self.retry.run(lambda: self.call_once(method, **kwargs), what=method)

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()

    def objects_below(self) -> AsyncIterator[Entry]:
        """Every object below this prefix (recursively), paths relative to it; folder markers skipped.

        Raises :class:`NotFoundError` when there is none.
        """
        prefix = self.location.path.rstrip("/")
        return self.entries(f"{prefix}/" if prefix else "", folder_only=False)

    async def entries(self, prefix: str, *, folder_only: bool) -> AsyncIterator[Entry]:
        """The objects whose keys start with ``prefix``, as entries relative to it, page by page.

        ``folder_only``: only the keys directly in the folder (``Delimiter='/'``: S3 rolls every key below a
        deeper "/" into one CommonPrefix, so the pages hold this folder's own keys however many objects lie
        below it); the folder then exists if it holds anything, even only subfolders or its own marker.
        Otherwise every key below, and the prefix exists if it holds a file. Folder markers ("dir/") are
        never files. Raises :class:`NotFoundError` when the prefix does not exist.
        """
        args: dict[str, Any] = {"Bucket": self.location.bucket, "Prefix": prefix}
        if folder_only:
            args["Delimiter"] = "/"
        found = False
        while True:
            page = await self.call("list_objects_v2", **args)
            found = found or (folder_only and bool(page.get("Contents") or page.get("CommonPrefixes")))
            for obj in page.get("Contents", []):
                key = str(obj["Key"])
                if not key.endswith("/"):
                    found = True
                    yield Entry(key[len(prefix):], int(obj["Size"]), epoch(obj.get("LastModified")), obj.get("ETag"))
            if not page.get("IsTruncated"):
                break
            args["ContinuationToken"] = page["NextContinuationToken"]
        if not found:
            raise NotFoundError(f"nothing found under {self.location.with_path(prefix)}")

    def _root(self) -> S3Client:
        return self._parent._root() if self._parent is not None else self

    @property
    def returns_checksums(self) -> bool | None:
        """Whether this store echoes the checksums of what it stores (None: not known yet)."""
        return self._root()._echoes

    def note_checksums(self, echoed: bool) -> None:
        """What an upload's answer showed: a store without checksums is told once, then checked by MD5."""
        root = self._root()
        if root._echoes is None and not echoed:
            log.warning("%s returns no checksums: checking every part and the object by their MD5 ETags "
                        "instead", self.options.resolved_endpoint() or "the S3 endpoint")
        root._echoes = echoed if root._echoes is None else root._echoes and echoed


def _trailer_for_streamed_parts(params: dict[str, Any], **_: Any) -> None:
    """Send a :class:`StreamedPart`'s checksum as a trailer, also over plain http.

    botocore only chooses trailers over https (where payload signing is off);
    s3ferry streams a part only when its payload is not signed (see
    ``S3Options.can_stream_parts``), so the trailer is just as valid there.
    """
    from s3ferry.engine.streamed import StreamedPart

    algorithm = params.get("context", {}).get("checksum", {}).get("request_algorithm")
    if isinstance(params.get("body"), StreamedPart) and isinstance(algorithm, dict):
        algorithm["in"] = "trailer"
