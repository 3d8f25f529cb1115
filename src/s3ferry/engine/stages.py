"""Transforms of a byte stream in flight (issue 19): compression, OpenPGP, ...

A :class:`Stage` turns an in-order stream of chunks into another one. Stages
chain: ``b.apply(a.apply(source))``. The transfer engine feeds the first stage
the source's bytes in order (read ahead in parallel ranges as usual) and
uploads the last stage's output as parts of an upload whose size it learns at
the end.

Contract every stage keeps:

* Bounded memory: it holds at most a few chunks (or its tool's pipe buffers),
  whatever the stream's length; it never writes payload bytes to disk.
* Integrity: input that fails the format's own check (a truncated gzip or zstd
  frame, an OpenPGP MDC/AEAD failure, a missing or bad signature when one is
  required) raises :class:`~s3ferry.core.errors.IntegrityError` (exit 3) --
  at the latest when the input ends, before the engine publishes anything.
* Clean-up: when the consumer stops early (an error elsewhere, cancellation),
  closing the iterator ``apply`` returned releases everything it holds (a
  helper process is killed and reaped).
* ``deterministic``: the same input gives the same output bytes on every run
  (compression at a fixed level, decryption). Resume depends on it: a
  deterministic chain can re-derive the prefix of its output and prove each
  stored part by its checksum; a non-deterministic one (encryption draws a
  fresh session key) restarts from the first byte.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator


class Stage(ABC):
    """One transform of a byte stream, fed in order."""

    #: short name shown in logs and recorded in the object's metadata ("zstd", "gunzip", "pgp-decrypt")
    name: str
    #: same input, same output bytes on every run (see the module docstring: resume depends on it)
    deterministic: bool
    #: it checks its input against the format's own integrity data (gzip CRC, zstd XXH64, OpenPGP MDC):
    #: the result then says so
    checks_input: bool = False

    @abstractmethod
    def apply(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The transformed stream of ``chunks``; raises IntegrityError for input that fails its format's check."""

    @abstractmethod
    def rename(self, name: str) -> str:
        """The destination's file name for a source named ``name`` ("a.csv" -> "a.csv.zst", "a.csv.gpg" -> "a.csv")."""


def chain(stages: list[Stage], chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``chunks`` through every stage in order."""
    for stage in stages:
        chunks = stage.apply(chunks)
    return chunks


def renamed(stages: list[Stage], name: str) -> str:
    """The destination name after every stage in order."""
    for stage in stages:
        name = stage.rename(name)
    return name


def deterministic(stages: list[Stage]) -> bool:
    """Whether the chain's output can be re-derived on resume."""
    return all(stage.deterministic for stage in stages)
