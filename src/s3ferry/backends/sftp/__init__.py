"""SFTP source and destination over asyncssh, with OpenSSH's defaults and trust rules.

* Settings come from ``~/.ssh/config`` (Host, HostName, Port, User, HostKeyAlias,
  IdentityFile, UserKnownHostsFile), default key files and the agent, as with
  ``ssh``; ``--identity``, ``--known-hosts``, ``--host-key`` override them.
* Host keys are always verified: against known_hosts, or against one pinned
  ``SHA256:`` fingerprint. A missing known_hosts file trusts nothing.
* Reads are issued by us, not by ``SFTPClientFile.read()`` of a large range
  (which reassembles into a growing bytearray): a sliding window of
  single-request reads per stream, each copied once into the part buffer.
* As a destination, parts are written at their offsets (a sliding window of
  write requests) into a temporary name beside the target, which is renamed
  into place (``posix-rename@openssh.com`` where offered, so an existing file
  is replaced atomically) once every part is there. All writers share one SSH
  connection: partner servers often cap connections per user. A failure that
  may pass keeps the temporary file for the journal: the same command run
  again reads the journaled parts back, checks their checksums and writes
  only the rest (as for local files). A full disk is not such a failure
  (OpenSSH reports ENOSPC as a bare failure: ``statvfs@openssh.com`` tells).
* Listings use bytes paths, so one name that is not UTF-8 cannot stop them;
  names are checked (:func:`~s3ferry.backends.sftp.files.walk`), and a tree is
  never written through a symbolic link to a folder inside its destination
  (:meth:`~s3ferry.backends.sftp.sink.SftpSink._confine`).

The modules, each importing only modules listed above it (checked by import-linter):

* ``errors``: :func:`translate_error`, asyncssh's and the OS's errors as s3ferry's.
* ``window``: :func:`sliding_window`, the one window of requests reads and writes share.
* ``trust``: the SSH side: host keys (known_hosts, a pinned fingerprint, the
  messages that say how to fix a mismatch), jump host addresses, cipher order.
* ``endpoint``: ``SftpEndpoint``, the connections to one server (opened on demand,
  pooled, shared with a tree's files) and the tuning sized from the round trip.
* ``files``: what the source and the sink both do on an open session: ranged
  reads, a rename that replaces, folder listings and tree walks.
* ``source``: :class:`SftpSource`.
* ``sink``: :class:`SftpSink` and its writer.
"""

from s3ferry.backends.sftp.errors import translate_error
from s3ferry.backends.sftp.sink import SftpSink
from s3ferry.backends.sftp.source import SftpSource
from s3ferry.backends.sftp.window import sliding_window

__all__ = ["SftpSink", "SftpSource", "sliding_window", "translate_error"]
