"""S3 (and S3-compatible stores) as a source and as a sink.

- :mod:`.sink` -- :class:`~.sink.S3Sink`: PutObject, multipart uploads, resume, checks of what S3 stored.
- :mod:`.source` -- :class:`~.source.S3Source`: ranged GETs pinned to one version, listings, stored checks.
- :mod:`.client` -- :class:`~.client.S3Client`, which both extend: the aiobotocore client, calls with the
  retry policy, prefix listings.
- :mod:`.errors` -- :func:`~.errors.translate`: botocore's errors as s3ferry's.
- :mod:`.objects` -- what a HeadObject answer says (size, mtime, checksum), ETag and SSE-C helpers.

The sink and the source import only the three modules below them, never each other (an import-linter
contract). Nothing is imported here: callers import the module they need, when they need it, so that
aiobotocore is loaded only by commands that reach S3.
"""
