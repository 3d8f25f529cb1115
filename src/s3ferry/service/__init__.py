"""``s3ferry serve``: the long-running process of issue 18.

It runs the flows of a flows file on their schedules (the ``jobs`` layer's
scheduler, as ``s3ferry run`` does), pushes an object the moment an S3 event
notification says it landed, and serves one HTTP port: a versioned JSON API
with its OpenAPI document, a status page, ``/metrics`` and ``/healthz``.
"""
