"""Helpers the tests import (``support.helpers``) and the shared conformance suites (``support.conformance``)."""
