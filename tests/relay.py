"""A TCP relay on 127.0.0.1 that a test puts between the app and Postgres and can pause.

Paused, it looks to the app exactly like a Postgres stopped with `kill -STOP`: the sockets stay
open, new connections are accepted, and not a byte is forwarded either way until it resumes (what
arrived meanwhile is then delivered). Nothing is signalled on the shared test cluster.

It also counts what the app sends: each time the app writes and then waits for Postgres's answer
is one read on the relay's app side, so `sent` counts the app's round trips to the database."""

import socket
import threading

CHUNK = 65536
POLL_SECONDS = 0.2


class PausableRelay:
    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(POLL_SECONDS)
        self.port = self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._stopped = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.sent = 0  # reads from the app's side: its round trips to Postgres
        self._threads = [threading.Thread(target=self._accept_forever, name="relay-accept", daemon=True)]
        self._threads[0].start()

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._stopped.set()
        self._flowing.set()
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _close(sock)
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept_forever(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._sockets += [client, server]
            for source, target, counted in ((client, server, True), (server, client, False)):
                thread = threading.Thread(target=self._pump, args=(source, target, counted), name="relay-pump",
                                          daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pump(self, source: socket.socket, target: socket.socket, counted: bool) -> None:
        source.settimeout(POLL_SECONDS)
        while not self._stopped.is_set():
            if not self._flowing.wait(POLL_SECONDS):
                continue  # paused: read nothing, so the sender's bytes wait in the kernel
            try:
                data = source.recv(CHUNK)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            if counted:
                with self._lock:
                    self.sent += 1
            self._flowing.wait()  # paused after the read: hold what was read until resumed
            try:
                target.sendall(data)
            except OSError:
                break
        # One side hung up: so does the other (after a pause, as a stopped process would).
        self._flowing.wait()
        _close(target)
        _close(source)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
