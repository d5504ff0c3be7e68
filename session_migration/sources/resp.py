"""A lean pipelined request/reply path for the per-key hot loop.

redis-py spends ~3 us of Python per pipelined command (argument checks, packing, reply
callbacks); at a million keys that is most of a backup's time. Here a whole batch is
packed into one buffer, sent on a connection that redis-py opened (so AUTH, SELECT and TLS
stay redis-py's), and the replies are parsed by hiredis in C. Error replies come back as
`hiredis.ReplyError` values, never raised.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import hiredis
import redis

_RECV_BYTES = 1 << 20
_FEED_BYTES = 16 << 10
MORE = object()  # what `ReplyReader.gets` returns when it needs more bytes


def pack(args: Sequence[bytes]) -> bytes:
    """RESP encoding of one command whose arguments are already bytes."""
    # the command name apart: the keys after it usually share a length (see `_bulks`)
    return b"*%d\r\n" % len(args) + _bulks(args[:1]) + _bulks(args[1:])


def pack_per_key(command: bytes, keys: Sequence[bytes]) -> bytes:
    """`command key` for every key, e.g. PEXPIRETIME k1, PEXPIRETIME k2, ..."""
    return _bulks(keys, before=b"*2\r\n$%d\r\n%s\r\n" % (len(command), command))


def _bulks(items: Sequence[bytes], before: bytes = b"") -> bytes:
    """`items` as RESP bulk strings, back to back, each preceded by `before`."""
    length = _common_length(items)
    if length is None:
        return b"".join([before + b"$%d\r\n%s\r\n" % (len(x), x) for x in items])
    head = before + b"$%d\r\n" % length
    return head + (b"\r\n" + head).join(items) + b"\r\n"


def _common_length(items: Sequence[bytes]) -> int | None:
    """The length all `items` share, if any. Session ids have one fixed length per store, so a
    batch of keys is usually one `bytes.join` instead of a formatted header per key (~0.3 s of
    Python per 1M keys in a backup)."""
    lengths = set(map(len, items))
    return lengths.pop() if len(lengths) == 1 else None


def receive(sock, buffer: bytearray) -> memoryview:
    """The next bytes from `sock`, read into `buffer` (valid until its next read).

    A reused buffer, not `sock.recv(1 MB)`: that allocates a fresh 1 MB object for each read.
    Where glibc's mmap threshold is fixed (setting MALLOC_TRIM_THRESHOLD_ does that, and Dask's
    nanny sets it in every worker), each such object is a new mapping whose pages fault as the
    kernel fills them: a backup unit on a Dask worker took 11.8 s against 8.8 s
    (docs/benchmarks.md)."""
    try:
        size = sock.recv_into(buffer)
    except TimeoutError as exc:  # the socket's timeout
        raise redis.exceptions.TimeoutError(str(exc)) from None
    except OSError as exc:  # resets
        raise redis.exceptions.ConnectionError(str(exc)) from None
    if not size:
        raise redis.exceptions.ConnectionError("Connection closed by server.")
    return memoryview(buffer)[:size]


def new_buffer() -> bytearray:
    return bytearray(_RECV_BYTES)


_per_thread = threading.local()


def thread_buffer() -> bytearray:
    """This thread's receive buffer, for replies read to the end before the call returns
    (`execute`): one allocation per thread, not one per call."""
    buffer = getattr(_per_thread, "buffer", None)
    if buffer is None:
        buffer = _per_thread.buffer = new_buffer()
    return buffer


class ReplyReader:
    """hiredis' reply parser, fed at most 16 KB at a time from the chunks it is given.

    After each reply, once it has consumed 1 KB, hiredis moves the rest of its buffer to the
    front. Fed a whole 1 MB chunk of ~1 KB replies (a cluster node's GET per key), it moves up
    to 1 MB per reply: 8.8 us a reply against 0.34 us in 16 KB slices (measured with hiredis
    3.5; replies in one array, like MGET's, are parsed in one call and never paid this).
    `feed` a new chunk only after `gets` returned `MORE`: the last one is used up then.
    """

    def __init__(self, buffer: bytearray | None = None) -> None:
        self._reader = hiredis.Reader(notEnoughData=MORE)
        self._buffer = new_buffer() if buffer is None else buffer  # what `receive_from` reads into
        self._chunk: bytes | memoryview = b""
        self._at = 0
        self.received = 0  # bytes read from the socket so far (what a read's replies weigh)

    def feed(self, chunk: bytes | memoryview) -> None:
        self._chunk, self._at = chunk, 0

    def gets(self):
        """The next reply (`hiredis.ReplyError` for an error reply), or `MORE`."""
        while (reply := self._reader.gets()) is MORE and self._at < len(self._chunk):
            size = min(_FEED_BYTES, len(self._chunk) - self._at)
            self._reader.feed(self._chunk, self._at, size)
            self._at += size
        return reply

    def next_from(self, sock) -> object:
        """The next reply, reading from `sock` (a connected socket) while more bytes are needed."""
        while (reply := self.gets()) is MORE:
            self.receive_from(sock)
        return reply

    def receive_from(self, sock) -> None:
        """Feed the next bytes of `sock`; only once `gets` returned `MORE` (the last chunk, in
        the reused buffer, is used up then)."""
        chunk = receive(sock, self._buffer)
        self.received += len(chunk)
        self.feed(chunk)


def execute(client: redis.Redis, packed: bytes, replies: int) -> list:
    """Send `packed` (holding `replies` commands) and return the replies in order."""
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command([packed])
        sock = conn._sock  # noqa: SLF001 - redis-py's socket: opened, authenticated, selected
        reader = ReplyReader(thread_buffer())
        return [reader.next_from(sock) for _ in range(replies)]
    except BaseException:
        conn.disconnect()  # never hand back a connection with unread replies
        raise
    finally:
        pool.release(conn)


class Stream:
    """Requests sent ahead on a connection of its own, replies read back in order.

    `execute` waits for each batch's replies before sending the next, so the server idles
    while the client decodes and the client idles while the server works. A stream keeps the
    next request queued at the server while the client is busy with the last reply. The
    connection is made from the client's pool settings (AUTH, SELECT, TLS) but is not shared.
    """

    def __init__(self, client: redis.Redis, *, no_touch: bool = False):
        self._conn = client.connection_pool.make_connection()
        self._reader = ReplyReader()
        try:
            self._conn.connect()
            if no_touch:  # a per-connection setting: see RedisSource
                self.send(pack([b"CLIENT", b"NO-TOUCH", b"ON"]))
                self.reply()
        except BaseException:
            self.close()
            raise

    def send(self, packed: bytes) -> None:
        try:
            self._conn.send_packed_command([packed])
        except OSError as exc:
            raise redis.exceptions.ConnectionError(str(exc)) from None

    def reply(self):
        return self._reader.next_from(self._conn._sock)  # noqa: SLF001 - see `execute`

    def replies(self, count: int) -> list:
        return [self.reply() for _ in range(count)]

    @property
    def received(self) -> int:
        """Bytes read from the server so far."""
        return self._reader.received

    def close(self) -> None:
        self._conn.disconnect()
