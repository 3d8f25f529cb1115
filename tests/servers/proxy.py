"""A TCP proxy for fault tests: forwards to a real server and cuts on cue.

``CuttingProxy(target_port, cut_after=N)`` forwards connections until N
bytes have flowed from the server to clients (all connections together),
then closes every connection and refuses (accept-and-close) new ones.
``cut_every=N`` instead closes every open connection each time another N
bytes have flowed, and keeps accepting new ones (a flaky network).
``upstream=True`` counts client -> server bytes instead (a client that
writes: uploads to an SFTP destination). It runs in its own thread so tests
can drive the CLI as a subprocess.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Self

from s3ferry.demo.servers import free_port


class CuttingProxy:
    def __init__(self, target_port: int, cut_after: int | None = None, port: int | None = None,
                 cut_every: int | None = None, upstream: bool = False) -> None:
        self.target_port = target_port
        self.upstream = upstream
        self.cut_after = cut_after
        self.cut_every = cut_every
        self.cuts = 0
        self._next_cut = cut_every
        self.port = port or free_port()
        self.forwarded = 0  # server -> client bytes (client -> server with upstream=True)
        self.cut = threading.Event()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.cut.set()
        # shutdown wakes the thread blocked in accept(); not connected (OSError) is fine for a listener on some kernels
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=5)
        self._close_all()

    def _close_all(self) -> None:
        with self._lock:
            socks, self._socks = self._socks, []
        for sock in socks:
            with contextlib.suppress(OSError):  # already closed by the other side
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # listener closed
            if self.cut.is_set():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, downstream: bool) -> None:
        try:
            while not self.cut.is_set():
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                if downstream != self.upstream:
                    self._count(len(data))
        except OSError:
            pass  # the other pump or close() tore the connection down
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _count(self, n: int) -> None:
        with self._lock:
            self.forwarded += n
            over = self.cut_after is not None and self.forwarded >= self.cut_after
            periodic = self._next_cut is not None and self.forwarded >= self._next_cut
            if periodic and self.cut_every is not None:
                self._next_cut = self.forwarded + self.cut_every
                self.cuts += 1
        if periodic:
            self._close_all()
        if over and not self.cut.is_set():
            self.cut.set()
            self._close_all()
