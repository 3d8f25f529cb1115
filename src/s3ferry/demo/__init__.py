"""``s3ferry demo``: embedded OpenSSH and SeaweedFS servers (``servers``, also the test bed) and a real
transfer between them (``walkthrough``)."""
