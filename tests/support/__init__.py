"""Helpers the tests import (``support.helpers``; ``support.resume``: crash-and-resume runs through the S3 fault
proxy; ``support.wan``: the test sshd behind a delay line) and the shared conformance suites
(``support.conformance``)."""
