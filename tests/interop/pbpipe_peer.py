"""A pbpipe peer in Python, written from docs/PROTOCOL.md.

It speaks protocol 1.0 (Hello.minor 0), which the document allows a minimal
peer to do: 1.1 peers never send it a Sync, and it skips the 1.1 reply
fields of Message.

Frames are a base-128 varint length followed by one serialized
pbpipe.Envelope.  The Envelope/Hello/Goodbye/Message classes come from
`protoc --python_out` run on proto/pbpipe.proto at build time; the
directory holding the generated *_pb2.py files is named by the environment
variable PBPIPE_PY_GEN (see load_generated()).

    import pbpipe_peer as pp
    pb, demo = pp.load_generated("pbpipe_pb2", "demo_pb2")
    fp = pp.schema_fingerprint("proto", ["demo.proto"])
    ch = pp.Channel(read_fd, write_fd, fingerprint=fp,
                    types={demo.GREETING: demo.Greeting})
    ch.handshake()                       # deadline: 5 s by default
    ch.send(demo.Greeting(text="hi"))
    m = ch.recv()                        # Received(type, id, payload, message)
    ch.goodbye()                         # Goodbye DONE, then close our write side

Errors are PbpipeError subclasses named after the C codes (.code).  The
end of the peer's stream, between two frames or after its Goodbye, is not an
error: recv() raises EndOfStream, which is not a PbpipeError.  A stream
that ends inside a frame raises TruncatedError instead.

Only the standard library and the protobuf runtime are used; varints are
read and written here, not with protobuf's private helpers.
"""

import collections
import fcntl
import hashlib
import importlib
import os
import pathlib
import select
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time

MAGIC = 0x50425050
MAJOR = 1
MINOR = 0
DEFAULT_MAX_FRAME = 4 << 20        # the C default, 4 MiB
MIN_MAX_FRAME = 256                # a smaller Hello.max_frame is refused
FIRST_FRAME_LIMIT = 1024           # the limit on the peer's Hello frame
DEFAULT_HANDSHAKE_TIMEOUT = 5.0    # seconds, as in C (handshake_timeout_ms)
DETAIL_MAX = 127                   # Goodbye.detail, bytes of UTF-8
UINT32_MAX = (1 << 32) - 1
UINT64_MAX = (1 << 64) - 1

_READ_CHUNK = 65536


# ---- errors ------------------------------------------------------------------

class PbpipeError(Exception):
    """Base of every pbpipe error; .code is the matching C error name."""
    code = "PBP_ERROR"


class UsageError(PbpipeError):
    """Bad handles, a call in the wrong state, a bad argument (C: PBP_EINVAL)."""
    code = "PBP_EINVAL"


class ProtocolError(PbpipeError):
    """The peer broke the protocol (C: PBP_EPROTO)."""
    code = "PBP_EPROTO"


class HandshakeError(ProtocolError):
    """The peer's first frame is not an acceptable Hello (C: PBP_EPROTO).

    .field names the failed check ("first frame", "magic", "major",
    "schema_fingerprint", "max_frame"); .ours and .peers hold both values.
    """

    def __init__(self, msg, field=None, ours=None, peers=None):
        super().__init__(msg)
        self.field, self.ours, self.peers = field, ours, peers


class FrameTooLarge(PbpipeError):
    """A frame over the limit, refused before its body (C: PBP_EMSGSIZE)."""
    code = "PBP_EMSGSIZE"


class DecodeError(PbpipeError):
    """An envelope that is not valid protobuf or breaks a field rule (C: PBP_EDECODE)."""
    code = "PBP_EDECODE"


class PayloadDecodeError(DecodeError):
    """The payload does not decode as its registered type.  The frame is
    consumed and the channel stays usable; .type, .id, .payload tell which."""

    def __init__(self, msg, type=None, id=None, payload=None):
        super().__init__(msg)
        self.type, self.id, self.payload = type, id, payload


class UnknownType(PbpipeError):
    """A Message whose type has no registered class (C: PBP_ETYPE).  The frame
    is consumed and the channel stays usable; .type, .id, .payload tell which."""
    code = "PBP_ETYPE"

    def __init__(self, msg, type=None, id=None, payload=None):
        super().__init__(msg)
        self.type, self.id, self.payload = type, id, payload


class TruncatedError(PbpipeError):
    """The stream ended inside a length prefix or a body (C: PBP_ETRUNC)."""
    code = "PBP_ETRUNC"


class TruncatedHandshake(TruncatedError):
    """The stream ended before the peer's Hello was complete (C: PBP_ETRUNC)."""


class Timeout(PbpipeError):
    """A deadline passed (C: PBP_ETIMEDOUT).  Fatal during the handshake;
    after it, a recv() timeout loses nothing and the call can be repeated."""
    code = "PBP_ETIMEDOUT"


class PeerGone(PbpipeError):
    """Writing to a stream whose reader has gone (C: PBP_EPIPE)."""
    code = "PBP_EPIPE"


class EndOfStream(Exception):
    """The peer ended its stream normally: end of stream exactly between two
    frames after the handshake, or a Goodbye (C: PBP_EOF).  Not an error.
    .goodbye is the peer's pbpipe.Goodbye, or None if it sent none."""

    def __init__(self, goodbye=None):
        if goodbye is None:
            msg = "end of stream"
        else:
            msg = f"end of stream: the peer said Goodbye (reason {goodbye.reason}"
            msg += f": {goodbye.detail})" if goodbye.detail else ")"
        super().__init__(msg)
        self.goodbye = goodbye


Received = collections.namedtuple("Received", "type id payload message")


# ---- generated classes and the fingerprint -------------------------------------

def load_generated(*modules):
    """Imports protoc-generated modules (e.g. "pbpipe_pb2", "demo_pb2") from
    the directory named by $PBPIPE_PY_GEN.  Returns them, one per name."""
    gen = os.environ.get("PBPIPE_PY_GEN")
    if gen and gen not in sys.path:
        sys.path.insert(0, gen)
    out = []
    for name in modules:
        try:
            out.append(importlib.import_module(name))
        except ImportError as e:
            raise ImportError(
                f"cannot import {name} ({e}); set PBPIPE_PY_GEN to the directory "
                f"holding the protoc --python_out files (the build's tests/interop/py), "
                f"currently {gen!r}, and run with /usr/bin/python3") from e
    return out[0] if len(out) == 1 else tuple(out)


def find_protoc():
    """$PBPIPE_PROTOC, else /usr/bin/protoc, else protoc on PATH."""
    p = os.environ.get("PBPIPE_PROTOC")
    if p:
        return p
    if os.access("/usr/bin/protoc", os.X_OK):
        return "/usr/bin/protoc"
    p = shutil.which("protoc")
    if p is None:
        raise FileNotFoundError("protoc not found (set PBPIPE_PROTOC)")
    return p


def schema_fingerprint(proto_dir, protos, protoc=None):
    """The schema fingerprint of PROTOCOL.md section 7: protoc's
    FileDescriptorSet (no source info, no imports) of the sorted .proto
    paths relative to proto_dir, SHA-256, first 8 bytes big-endian.
    protos may be absolute or relative to proto_dir."""
    root = pathlib.Path(proto_dir).resolve()
    files = sorted(str(root.joinpath(p).resolve().relative_to(root)) for p in protos)
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp, "schema.desc")
        r = subprocess.run([protoc or find_protoc(), f"-I{root}",
                            f"--descriptor_set_out={out}", *files],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"protoc failed computing the schema fingerprint: "
                               f"{r.stderr.strip()}")
        return int.from_bytes(hashlib.sha256(out.read_bytes()).digest()[:8], "big")


# ---- varints and the strict envelope check -------------------------------------

def encode_varint(n):
    """The shortest base-128 varint of n (0 <= n < 2**64)."""
    if n < 0 or n > UINT64_MAX:
        raise ValueError(f"varint out of range: {n}")
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def frame_prefix(buf):
    """Parses a frame length prefix at the start of buf.
    Returns (length, prefix_size), or None if more bytes are needed.
    Raises ProtocolError for a prefix over 5 bytes or over 32 bits."""
    n = 0
    for i in range(min(len(buf), 5)):
        b = buf[i]
        if i == 4 and b > 0x0F:
            raise ProtocolError("bad frame length prefix "
                                "(varint longer than 5 bytes or over 32 bits)")
        n |= (b & 0x7F) << (7 * i)
        if b < 0x80:
            return n, i + 1
    return None


def _varint(buf, pos, what):
    n = shift = 0
    while True:
        if pos >= len(buf):
            raise DecodeError(f"malformed {what}: truncated varint")
        b = buf[pos]
        pos += 1
        if shift == 63 and b > 1:
            raise DecodeError(f"malformed {what}: varint over 64 bits")
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, pos
        shift += 7


def _fields(buf, what):
    """Walks the fields of one protobuf message: yields (number, wire_type,
    value), value being an int or a memoryview.  Groups (wire types 3, 4)
    and wire types 6, 7 are decode errors, as in nanopb."""
    pos = 0
    mv = memoryview(buf)
    while pos < len(buf):
        key, pos = _varint(buf, pos, what)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise DecodeError(f"malformed {what}: field number 0")
        if num > 0x1FFFFFFF:
            raise DecodeError(f"malformed {what}: field number {num} out of range")
        if wt == 0:
            val, pos = _varint(buf, pos, what)
        elif wt == 1 or wt == 5:
            size = 8 if wt == 1 else 4
            if pos + size > len(buf):
                raise DecodeError(f"malformed {what}: truncated fixed-size field {num}")
            val = int.from_bytes(buf[pos:pos + size], "little")
            pos += size
        elif wt == 2:
            size, pos = _varint(buf, pos, what)
            if pos + size > len(buf):
                raise DecodeError(f"malformed {what}: field {num} runs past the end")
            val = mv[pos:pos + size]
            pos += size
        else:
            raise DecodeError(f"malformed {what}: field {num} has wire type {wt}")
        yield num, wt, val


# Known fields: number -> (wire type, largest value for varints or None).
_HELLO_FIELDS = {1: (5, None), 2: (0, UINT32_MAX), 3: (0, UINT32_MAX), 4: (0, UINT32_MAX),
                 5: (0, UINT32_MAX), 6: (0, UINT32_MAX), 7: (1, None)}
_GOODBYE_FIELDS = {1: (0, UINT32_MAX), 2: (2, None)}
_MESSAGE_FIELDS = {1: (0, UINT32_MAX), 2: (0, None), 3: (2, None)}
_BODIES = {1: ("Hello", _HELLO_FIELDS), 2: ("Goodbye", _GOODBYE_FIELDS),
           3: ("Message", _MESSAGE_FIELDS)}
# What a 1.2 peer knows on top (stream_peer.py): Hello.stream_window, the
# reply fields and Message.stream, the four stream bodies.
_HELLO_FIELDS_12 = {**_HELLO_FIELDS, 8: (0, UINT32_MAX)}
_MESSAGE_FIELDS_12 = {**_MESSAGE_FIELDS, 4: (0, None), 5: (0, UINT32_MAX), 6: (2, None),
                      7: (0, None)}
_STREAM_END_FIELDS = {1: (0, None), 2: (0, UINT32_MAX), 3: (2, None)}
_BODIES_12 = {1: ("Hello", _HELLO_FIELDS_12), 2: ("Goodbye", _GOODBYE_FIELDS),
              3: ("Message", _MESSAGE_FIELDS_12),
              4: ("Sync", {1: (0, None)}), 5: ("SyncAck", {1: (0, None)}),
              6: ("StreamData", {1: (0, None), 2: (2, None)}),
              7: ("StreamEnd", _STREAM_END_FIELDS),
              8: ("StreamCredit", {1: (0, None), 2: (0, UINT32_MAX)}),
              9: ("StreamCancel", _STREAM_END_FIELDS)}
# The strings of at most DETAIL_MAX bytes: (body, field).
_STRINGS = {(2, 2), (3, 6), (7, 3), (9, 3)}


def check_envelope(body, minor=0):
    """Applies PROTOCOL.md section 3 to an Envelope body, field by field, in
    wire order as the C decoder does.  Returns (kind, fields): kind is the
    body's field number (1 hello, 2 goodbye, 3 message; with minor 2 also
    4..9, the 1.1 and 1.2 bodies), fields maps the body's known field
    numbers to their last values (ints, or bytes for the length-delimited
    fields).  Raises DecodeError or ProtocolError."""
    bodies = _BODIES_12 if minor >= 2 else _BODIES
    kind, fields = 0, {}
    for num, wt, val in _fields(body, "envelope"):
        if num not in bodies:
            continue                                # unknown: skipped
        if wt != 2:
            raise DecodeError(f"malformed envelope: field {num} has wire type {wt}")
        if kind:
            raise ProtocolError("envelope holds more than one body")
        name, known = bodies[num]
        for fnum, fwt, fval in _fields(val, name):
            if fnum not in known:
                continue                            # unknown: skipped
            want_wt, top = known[fnum]
            if fwt != want_wt:
                raise DecodeError(f"malformed {name}: field {fnum} has wire type {fwt}")
            if top is not None and fval > top:
                raise DecodeError(f"malformed {name}: field {fnum} value {fval} "
                                  f"does not fit 32 bits")
            if (num, fnum) in _STRINGS and len(fval) > DETAIL_MAX:
                raise DecodeError(f"malformed {name}: string field {fnum} of {len(fval)} "
                                  f"bytes (at most {DETAIL_MAX})")
            fields[fnum] = bytes(fval) if fwt == 2 else fval
        if num == 3 and fields.get(1, 0) == 0:
            raise ProtocolError("application message without a type (type 0)")
        kind = num
    if not kind:
        raise ProtocolError("envelope holds no body")
    return kind, fields


def envelope_from_fields(pb, kind, f):
    """The pbpipe.Envelope for check_envelope()'s result.  Goodbye.detail is
    decoded leniently (invalid UTF-8 is replaced, as C does not check it)."""
    if kind == 1:
        extra = {"stream_window": f[8]} if 8 in f else {}
        return pb.Envelope(hello=pb.Hello(
            magic=f.get(1, 0), major=f.get(2, 0), minor=f.get(3, 0), pid=f.get(4, 0),
            pointer_bits=f.get(5, 0), max_frame=f.get(6, 0), schema_fingerprint=f.get(7, 0),
            **extra))
    if kind == 2:
        reason = f.get(1, 0)
        if reason > 0x7FFFFFFF:                     # an int32 enum on the Python side
            reason -= 1 << 32
        return pb.Envelope(goodbye=pb.Goodbye(
            reason=reason, detail=f.get(2, b"").decode("utf-8", "replace")))
    if kind == 3:
        extra = {}
        if 4 in f or 5 in f or 6 in f or 7 in f:    # 1.1 and 1.2 fields (minor >= 2)
            extra = dict(reply_to=f.get(4, 0), error_code=f.get(5, 0),
                         error_message=f.get(6, b"").decode("utf-8", "replace"),
                         stream=f.get(7, 0))
        return pb.Envelope(message=pb.Message(type=f[1], id=f.get(2, 0),
                                              payload=f.get(3, b""), **extra))
    if kind == 4:
        return pb.Envelope(sync=pb.Sync(id=f.get(1, 0)))
    if kind == 5:
        return pb.Envelope(sync_ack=pb.SyncAck(id=f.get(1, 0)))
    if kind == 6:
        return pb.Envelope(data=pb.StreamData(stream=f.get(1, 0), chunk=f.get(2, b"")))
    if kind == 8:
        return pb.Envelope(credit=pb.StreamCredit(stream=f.get(1, 0), bytes=f.get(2, 0)))
    cls, field = (pb.StreamEnd, "end") if kind == 7 else (pb.StreamCancel, "cancel")
    return pb.Envelope(**{field: cls(stream=f.get(1, 0), error_code=f.get(2, 0),
                                     error_message=f.get(3, b"").decode("utf-8", "replace"))})


def cut_utf8(text, limit):
    """text encoded as UTF-8 and cut to at most limit bytes at a character
    boundary."""
    b = text.encode("utf-8")
    if len(b) <= limit:
        return text
    return b[:limit].decode("utf-8", "ignore")


# ---- the channel ---------------------------------------------------------------

class Channel:
    """One end of a pbpipe channel over two fds (or one socket for both).

    read_fd/write_fd are owned by the channel from now on: close() closes
    them.  fingerprint is the application's schema fingerprint; types maps
    Message.type numbers to generated message classes.
    """

    def __init__(self, read_fd, write_fd, *, fingerprint, types=None,
                 max_frame=DEFAULT_MAX_FRAME, handshake_timeout=DEFAULT_HANDSHAKE_TIMEOUT,
                 pb=None):
        if not MIN_MAX_FRAME <= max_frame <= UINT32_MAX:
            raise UsageError(f"max_frame {max_frame} is outside {MIN_MAX_FRAME} .. {UINT32_MAX}")
        if not 0 <= fingerprint <= UINT64_MAX:
            raise UsageError(f"fingerprint {fingerprint} does not fit 64 bits")
        self.pb = pb or load_generated("pbpipe_pb2")
        self.rfd, self.wfd = read_fd, write_fd
        self.fingerprint = fingerprint
        self.max_frame = max_frame
        self.handshake_timeout = handshake_timeout
        self.types = dict(types or {})
        for t in self.types:
            if not 1 <= t <= UINT32_MAX:
                raise UsageError(f"message type {t} is outside 1 .. {UINT32_MAX}")
        self._type_of = {cls: t for t, cls in self.types.items()}
        self.minor = MINOR                 # the version we speak (stream_peer.py: 2)
        self.limit = FIRST_FRAME_LIMIT     # until the handshake is done
        self.peer_hello = None             # the peer's Hello once accepted
        self.peer_goodbye = None
        self._buf = bytearray()
        self._eof = False                  # read() returned 0
        self._rx_exc = None                # sticky receive failure or end
        self._tx_exc = None                # sticky send failure
        self._state = "new"                # new, open, failed
        self._write_closed = False

    # -- construction helpers --

    @classmethod
    def from_argv(cls, argv=None, **kw):
        """The child side: the last two arguments are the fd this process
        writes to, then the fd it reads from, in decimal.  Raises UsageError
        naming the bad handle."""
        argv = sys.argv if argv is None else argv
        if len(argv) < 3:
            raise UsageError("expected two handle arguments: WRITE_FD READ_FD")
        wfd = _parse_handle(argv[-2], "write")
        rfd = _parse_handle(argv[-1], "read")
        _check_handle(argv[-2], "write", wfd, os.O_RDONLY)
        _check_handle(argv[-1], "read", rfd, os.O_WRONLY)
        if wfd == rfd and not stat.S_ISSOCK(os.fstat(wfd).st_mode):
            raise UsageError(f"write and read handles are both '{argv[-2]}'; "
                             f"only a socket can carry both directions")
        return cls(rfd, wfd, **kw)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the handshake --

    def handshake(self):
        """Sends our Hello, reads the peer's and checks it (magic, major,
        fingerprint, max_frame >= 256, in that order), all within
        handshake_timeout seconds (None: no deadline).  Sets self.limit to
        the smaller max_frame.  Any failure fails the channel."""
        if self._state != "new":
            raise UsageError("handshake already done")
        t = self.handshake_timeout
        deadline = None if t is None or t < 0 else time.monotonic() + t
        pb = self.pb
        hello = pb.Envelope(hello=pb.Hello(
            magic=MAGIC, major=MAJOR, minor=self.minor, pid=os.getpid() & UINT32_MAX,
            pointer_bits=struct.calcsize("P") * 8, max_frame=self.max_frame,
            schema_fingerprint=self.fingerprint, **self._hello_extra()))
        self._state = "failed"             # until proven otherwise
        sent_exc = None
        try:
            try:
                self._write_frame(hello.SerializeToString(), deadline, "our Hello")
            except PeerGone as e:
                # The peer may have written its Hello before it went: read
                # it, so that a refused handshake is reported as such.
                sent_exc = e
            try:
                kind, env = self._read_frame(deadline)
            except EndOfStream:
                raise TruncatedHandshake(
                    "the peer closed the stream before sending its Hello") from None
            except Timeout:
                raise Timeout(f"no Hello from the peer within {t} s") from None
            except TruncatedError as e:
                raise TruncatedHandshake(
                    f"{e}, before the peer's Hello was complete") from None
            self._check_hello(kind, env)
            if sent_exc is not None:
                raise sent_exc
        except PbpipeError as e:
            self._rx_exc = self._rx_exc or e
            raise
        self.peer_hello = env.hello
        self.limit = min(self.max_frame, env.hello.max_frame)
        self._state = "open"
        return self.peer_hello

    def _hello_extra(self):
        """Hello fields of later minor versions (none in 1.0)."""
        return {}

    def _check_hello(self, kind, env):
        if kind == 2:
            g = env.goodbye
            raise HandshakeError(f"the peer said Goodbye (reason {g.reason}: {g.detail}) "
                                 f"instead of Hello", "first frame", "hello", "goodbye")
        if kind == 3:
            raise HandshakeError("the peer's first frame is an application message, "
                                 "not Hello", "first frame", "hello", "message")
        h = env.hello
        if h.magic != MAGIC:
            raise HandshakeError(f"bad magic in peer's Hello: expected 0x{MAGIC:08x}, "
                                 f"got 0x{h.magic:08x}", "magic", MAGIC, h.magic)
        if h.major != MAJOR:
            raise HandshakeError(f"incompatible protocol version: ours {MAJOR}.{MINOR}, "
                                 f"peer's {h.major}.{h.minor}", "major", MAJOR, h.major)
        if h.schema_fingerprint != self.fingerprint:
            raise HandshakeError(
                f"schema fingerprint mismatch: ours 0x{self.fingerprint:016x}, "
                f"peer's 0x{h.schema_fingerprint:016x} (built from different .proto files?)",
                "schema_fingerprint", self.fingerprint, h.schema_fingerprint)
        if h.max_frame < MIN_MAX_FRAME:
            raise HandshakeError(f"peer's frame limit {h.max_frame} is below the minimum "
                                 f"{MIN_MAX_FRAME}", "max_frame", MIN_MAX_FRAME, h.max_frame)

    # -- sending --

    def send(self, message, id=0):
        """Sends an application message of a registered class."""
        t = self._type_of.get(type(message))
        if t is None:
            raise UsageError(f"{type(message).__name__} is not a registered message type")
        return self.send_raw(t, message.SerializeToString(), id)

    def send_raw(self, type, payload=b"", id=0):
        """Sends Message{type, id, payload}.  A body over the effective limit
        raises FrameTooLarge and writes nothing; the channel stays usable."""
        if not 1 <= type <= UINT32_MAX:
            raise UsageError(f"message type {type} is outside 1 .. {UINT32_MAX} (0 is reserved)")
        if not 0 <= id <= UINT64_MAX:
            raise UsageError(f"message id {id} does not fit 64 bits")
        self._check_can_send()
        env = self.pb.Envelope(message=self.pb.Message(type=type, id=id, payload=bytes(payload)))
        body = env.SerializeToString()
        if len(body) > self.limit:
            raise FrameTooLarge(f"a frame of {len(body)} bytes exceeds the limit of "
                                f"{self.limit} bytes; nothing was sent")
        self._write_frame(body, None, "a message")

    def goodbye(self, reason=None, detail=""):
        """Sends Goodbye (default reason DONE) as our last frame, then closes
        our write side.  detail is cut to 127 bytes of UTF-8."""
        pb = self.pb
        if reason is None:
            reason = pb.Goodbye.DONE
        self._check_can_send()
        env = pb.Envelope(goodbye=pb.Goodbye(reason=reason, detail=cut_utf8(detail, DETAIL_MAX)))
        try:
            self._write_frame(env.SerializeToString(), None, "Goodbye")
        finally:
            self.close_write()

    def close_write(self):
        """Closes our write side (half-close): the peer sees end of stream;
        receiving still works."""
        if self._write_closed:
            return
        self._write_closed = True
        if self.wfd == self.rfd:
            import socket
            try:
                socket.socket(fileno=os.dup(self.wfd)).shutdown(socket.SHUT_WR)
            except OSError:
                pass
        else:
            os.close(self.wfd)

    def _check_can_send(self):
        if self._state == "new":
            raise UsageError("no Message or Goodbye before the handshake")
        if self._state == "failed":
            raise UsageError("the handshake failed")
        if self._write_closed:
            raise UsageError("our write side is closed (Goodbye sent)")
        if self._tx_exc is not None:
            raise self._tx_exc

    def _write_frame(self, body, deadline, what):
        data = memoryview(encode_varint(len(body)) + body)
        try:
            while data:
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0 or not _poll(self.wfd, select.POLLOUT, left):
                        raise Timeout(f"the peer did not take {what} in time")
                data = data[os.write(self.wfd, data):]
        except BrokenPipeError:
            self._tx_exc = PeerGone(f"sending {what}: the peer closed its read side (EPIPE)")
            raise self._tx_exc from None

    # -- receiving --

    def recv(self, timeout=None):
        """The next application message as Received(type, id, payload,
        message), message decoded with its registered class.  Raises
        EndOfStream at the normal end, UnknownType or PayloadDecodeError for
        a frame it consumed (the channel stays usable), other PbpipeErrors
        for a broken stream (sticky) and Timeout if timeout seconds pass
        (nothing is lost)."""
        t, i, payload = self.recv_raw(timeout)
        cls = self.types.get(t)
        if cls is None:
            raise UnknownType(f"message type {t} is not registered", t, i, payload)
        try:
            msg = cls.FromString(payload)
        except Exception as e:  # google.protobuf.message.DecodeError and friends
            raise PayloadDecodeError(f"the payload of a message of type {t} does not decode "
                                     f"as {cls.__name__}: {e}", t, i, payload) from None
        return Received(t, i, payload, msg)

    def recv_raw(self, timeout=None):
        """The next Message as (type, id, payload); see recv()."""
        if self._state == "new":
            raise UsageError("receive before the handshake")
        if self._state == "failed":
            raise UsageError("the handshake failed")
        if self._rx_exc is not None:
            raise self._rx_exc
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            kind, env = self._read_frame(deadline)
        except Timeout:
            raise                                  # not sticky
        except (EndOfStream, PbpipeError) as e:
            self._rx_exc = e
            raise
        if kind == 1:
            self._rx_exc = ProtocolError("a second Hello after the handshake")
            raise self._rx_exc
        if kind == 2:
            self.peer_goodbye = env.goodbye
            self._rx_exc = EndOfStream(env.goodbye)
            raise self._rx_exc
        m = env.message
        return m.type, m.id, m.payload

    def __iter__(self):
        """Received messages until the normal end of the stream."""
        while True:
            try:
                yield self.recv()
            except EndOfStream:
                return

    def _read_frame(self, deadline):
        """Returns (kind, Envelope) of the next frame.  The length is checked
        against the limit before the body is waited for."""
        while True:
            got = frame_prefix(self._buf)
            if got is not None:
                n, hdr = got
                if n > self.limit:
                    raise FrameTooLarge(f"frame of {n} bytes exceeds the limit of "
                                        f"{self.limit} bytes")
                if len(self._buf) - hdr >= n:
                    body = bytes(self._buf[hdr:hdr + n])
                    del self._buf[:hdr + n]
                    kind, fields = check_envelope(body, self.minor)
                    return kind, envelope_from_fields(self.pb, kind, fields)
            if self._eof:
                if not self._buf:
                    raise EndOfStream()
                if got is None:
                    raise TruncatedError(f"end of stream inside a frame header "
                                         f"({len(self._buf)} bytes)")
                raise TruncatedError(f"end of stream inside a frame body "
                                     f"({len(self._buf) - got[1]} of {got[0]} bytes)")
            self._fill(deadline)

    def _fill(self, deadline):
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not _poll(self.rfd, select.POLLIN, left):
                raise Timeout("receive timed out")
        try:
            data = os.read(self.rfd, _READ_CHUNK)
        except ConnectionResetError:
            data = b""
        if data:
            self._buf += data
        else:
            self._eof = True

    # -- the end --

    def close(self):
        """Closes both fds (without a Goodbye)."""
        if not self._write_closed:
            self._write_closed = True
            if self.wfd != self.rfd:
                os.close(self.wfd)
        if self.rfd is not None:
            os.close(self.rfd)
            self.rfd = None


def _poll(fd, events, seconds):
    p = select.poll()
    p.register(fd, events)
    return bool(p.poll(max(0, int(seconds * 1000 + 0.999))))


def _parse_handle(s, role):
    if not s:
        raise UsageError(f"{role} handle '' is empty")
    if not s.isascii() or not s.isdigit() or len(s) > 10:
        raise UsageError(f"{role} handle '{s[:40]}' is not a decimal fd number")
    if int(s) > 0x7FFFFFFF:
        raise UsageError(f"{role} handle '{s}' is out of range")
    return int(s)


def _check_handle(s, role, fd, wrong_mode):
    try:
        fl = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError:
        raise UsageError(f"{role} handle '{s}' is not an open file descriptor") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISFIFO(mode) and not stat.S_ISSOCK(mode):
        raise UsageError(f"{role} handle '{s}' is not a pipe, FIFO or socket")
    if fl & os.O_ACCMODE == wrong_mode:
        only = "reading" if wrong_mode == os.O_RDONLY else "writing"
        raise UsageError(f"{role} handle '{s}' is open for {only} only "
                         f"(handles in the wrong order?)")


def spawn(path, args=(), *, pass_env=None, channel_class=None, **channel_kw):
    """The parent side: starts path with two new pipes, appending the child's
    write fd and read fd to its argv.  Returns (subprocess.Popen, Channel),
    or an instance of channel_class (a Channel subclass such as
    stream_peer.StreamChannel); the handshake is not done yet.  Every other
    fd is closed in the child."""
    a_r, a_w = os.pipe2(os.O_CLOEXEC)          # child -> parent
    b_r, b_w = os.pipe2(os.O_CLOEXEC)          # parent -> child
    try:
        proc = subprocess.Popen([path, *args, str(a_w), str(b_r)], pass_fds=(a_w, b_r),
                                env=pass_env, **channel_kw.pop("popen", {}))
    except BaseException:
        for fd in (a_r, a_w, b_r, b_w):
            os.close(fd)
        raise
    os.close(a_w)
    os.close(b_r)
    return proc, (channel_class or Channel)(a_r, b_w, **channel_kw)

