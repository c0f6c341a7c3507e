"""A pbpipe 1.2 peer with streams, in Python, written from docs/PROTOCOL.md
section 5b.  Every frame is encoded with stock protobuf (the classes that
`protoc --python_out` generates from proto/pbpipe.proto) and checked with
pbpipe_peer.check_envelope() before it is decoded.

    import stream_peer as sp
    ch = sp.StreamChannel(read_fd, write_fd, fingerprint=fp, stream_window=1 << 20)
    ch.handshake()
    sid = ch.open_stream(TYPE, header_bytes)
    ch.write_stream(sid, data)           # waits for credit (the peer's window)
    ch.end_stream(sid)
    ev = ch.next_event()                 # Event(type, id, payload, stream)
    chunk = ch.read_stream(ev.stream)    # bytes; b"" at the clean end

The reader side grants credit once half its window has been consumed, as
the C library does, and enforces the window on the peer: more bytes than
granted is a ProtocolError.  Messages that arrive while a stream call
waits are kept for next_event(), in order.
"""

import collections
import time

import pbpipe_peer as pp

MINOR = 2
CHUNK_MAX = 256 * 1024             # the largest chunk this peer sends
ENVELOPE_OVERHEAD = 32             # StreamData's bytes besides the chunk, at most
UINT32_MAX = pp.UINT32_MAX

Event = collections.namedtuple("Event", "type id payload stream")


class StreamAborted(pp.PbpipeError):
    """The writer ended the stream with an error (StreamEnd, error_code != 0)."""

    def __init__(self, msg, code, text):
        super().__init__(msg)
        self.code, self.text = code, text


class StreamCancelled(pp.PbpipeError):
    """The reader cancelled the stream (StreamCancel)."""

    def __init__(self, msg, code, text):
        super().__init__(msg)
        self.code, self.text = code, text


class StreamTruncated(pp.TruncatedError):
    """The byte stream ended before the stream's StreamEnd."""


class _Out:
    def __init__(self, credit):
        self.credit = credit       # chunk bytes we may still send
        self.cancel = None         # (code, text) once the reader cancelled
        self.ended = False


class _In:
    def __init__(self, window):
        self.chunks = collections.deque()
        self.allowed = window      # chunk bytes the writer may still send
        self.buffered = 0          # bytes received, not yet consumed
        self.unacked = 0           # consumed since our last credit
        self.end = None            # (code, text) once StreamEnd came
        self.received = 0          # chunk bytes received in all


class StreamChannel(pp.Channel):
    """pp.Channel speaking 1.2: Hello.minor 2 with stream_window, streams
    in both directions."""

    def __init__(self, read_fd, write_fd, *, stream_window=1 << 20, **kw):
        super().__init__(read_fd, write_fd, **kw)
        if not (stream_window == 0 or 256 <= stream_window <= UINT32_MAX):
            raise pp.UsageError(f"stream_window {stream_window}: 0 or 256 .. 2^32-1")
        self.minor = MINOR
        self.stream_window = stream_window
        self._events = collections.deque()
        self._out = {}             # our streams by id
        self._in = {}              # the peer's streams by id, open ones
        self._next_id = 1
        self._last_in_id = 0       # the highest id the peer opened
        self.frames_seen = collections.Counter()

    def _hello_extra(self):
        return {"stream_window": self.stream_window}

    def _check_hello(self, kind, env):
        super()._check_hello(kind, env)
        h = env.hello
        if h.minor >= 2 and 0 < h.stream_window < 256:
            raise pp.HandshakeError(f"peer's stream window {h.stream_window} is below 256",
                                    "stream_window", 256, h.stream_window)

    def peer_window(self):
        h = self.peer_hello
        return h.stream_window if h.minor >= 2 else 0

    # -- frames --

    def _send_env(self, env, what, deadline=None):
        self._check_can_send()
        body = env.SerializeToString()
        if len(body) > self.limit:
            raise pp.FrameTooLarge(f"{what}: a frame of {len(body)} bytes exceeds the "
                                   f"limit of {self.limit}")
        self._write_frame(body, deadline, what)

    def _pump(self, deadline):
        """Reads one frame and handles it: messages are queued as events,
        stream frames update the streams."""
        if self._rx_exc is not None:
            raise self._rx_exc
        try:
            kind, env = self._read_frame(deadline)
        except pp.Timeout:
            raise
        except (pp.EndOfStream, pp.PbpipeError) as e:
            self._rx_exc = e
            raise
        self.frames_seen[kind] += 1
        pb = self.pb
        try:
            if kind == 1:
                raise pp.ProtocolError("a second Hello after the handshake")
            if kind == 2:
                self.peer_goodbye = env.goodbye
                raise pp.EndOfStream(env.goodbye)
            if kind == 3:
                m = env.message
                if m.stream:
                    if m.id or m.reply_to:
                        raise pp.ProtocolError("a stream's opening message with an id "
                                               "or reply_to")
                    if m.stream <= self._last_in_id:
                        raise pp.ProtocolError(f"stream {m.stream} opened after stream "
                                               f"{self._last_in_id}")
                    self._last_in_id = m.stream
                    self._in[m.stream] = _In(self.stream_window)
                self._events.append(Event(m.type, m.id, m.payload, m.stream))
            elif kind in (4, 5):
                raise pp.ProtocolError("this peer sends no Sync, so expects no SyncAck; "
                                       "it does not answer Sync either")
            elif kind in (6, 7):
                b = env.data if kind == 6 else env.end
                sid = b.stream
                if sid == 0:
                    raise pp.ProtocolError("stream 0")
                if sid > self._last_in_id:
                    raise pp.ProtocolError(f"data for stream {sid}, never opened")
                st = self._in.get(sid)
                if st is None or st.end is not None:
                    return                                  # over: dropped
                if kind == 6:
                    n = len(b.chunk)
                    if n > st.allowed:
                        raise pp.ProtocolError(f"stream {sid}: a chunk of {n} bytes with "
                                               f"{st.allowed} of window left")
                    st.allowed -= n
                    st.received += n
                    if n:
                        st.chunks.append(bytes(b.chunk))
                        st.buffered += n
                else:
                    st.end = (b.error_code, b.error_message)
            else:
                b = env.credit if kind == 8 else env.cancel
                sid = b.stream
                if sid == 0:
                    raise pp.ProtocolError("stream 0")
                st = self._out.get(sid)
                if st is None:
                    raise pp.ProtocolError(f"credit or cancel for stream {sid}, never opened")
                if kind == 8:
                    st.credit += b.bytes
                    if st.credit > UINT32_MAX:
                        raise pp.ProtocolError(f"stream {sid}: credit past 2^32-1")
                elif st.cancel is None:
                    st.cancel = (b.error_code, b.error_message)
        except (pp.EndOfStream, pp.PbpipeError) as e:
            self._rx_exc = e
            raise

    @staticmethod
    def _deadline(timeout):
        return None if timeout is None else time.monotonic() + timeout

    # -- messages --

    def next_event(self, timeout=None):
        """The next application message, a stream's opening one included:
        Event(type, id, payload, stream), stream nonzero for an open."""
        deadline = self._deadline(timeout)
        while not self._events:
            self._pump(deadline)
        return self._events.popleft()

    def send_raw(self, type, payload=b"", id=0):
        self._send_env(self.pb.Envelope(message=self.pb.Message(
            type=type, id=id, payload=bytes(payload))), "a message")

    # -- writing a stream --

    def open_stream(self, type, header=b""):
        if self.peer_window() == 0:
            raise pp.UsageError("the peer accepts no streams (minor < 2 or stream_window 0)")
        sid = self._next_id
        self._next_id += 1
        self._send_env(self.pb.Envelope(message=self.pb.Message(
            type=type, payload=bytes(header), stream=sid)), "a stream's opening message")
        self._out[sid] = _Out(self.peer_window())
        return sid

    def _writable(self, sid):
        st = self._out.get(sid)
        if st is None or st.ended:
            raise pp.UsageError(f"stream {sid} is not one of ours, or it has ended")
        if st.cancel is not None:
            raise StreamCancelled(f"stream {sid} cancelled by the reader: code "
                                  f"{st.cancel[0]}: {st.cancel[1]}", *st.cancel)
        return st

    def write_stream(self, sid, data, timeout=10.0, chunk=CHUNK_MAX):
        """Sends data as chunks, each waiting for credit up to timeout
        seconds.  Returns the number of chunks sent."""
        view = memoryview(bytes(data))
        most = max(1, min(chunk, self.limit - ENVELOPE_OVERHEAD))
        sent = 0
        while view:
            st = self._writable(sid)
            deadline = self._deadline(timeout)
            while st.credit == 0:
                self._pump(deadline)
                st = self._writable(sid)
            n = min(len(view), most, st.credit)
            self._send_env(self.pb.Envelope(data=self.pb.StreamData(
                stream=sid, chunk=bytes(view[:n]))), "a chunk")
            st.credit -= n
            view = view[n:]
            sent += 1
        # Credit and cancels that are already here.
        self._writable(sid)
        return sent

    def end_stream(self, sid, code=0, text=""):
        st = self._writable(sid)
        st.ended = True
        self._send_env(self.pb.Envelope(end=self.pb.StreamEnd(
            stream=sid, error_code=code, error_message=pp.cut_utf8(text, pp.DETAIL_MAX))),
            "a stream's end")

    def wait_cancel(self, sid, timeout=10.0):
        """Reads until the reader cancels our stream sid: (code, text)."""
        deadline = self._deadline(timeout)
        st = self._out[sid]
        while st.cancel is None:
            self._pump(deadline)
        return st.cancel

    # -- reading a stream --

    def read_stream(self, sid, timeout=10.0, grant=True):
        """The next bytes of the peer's stream sid: b"" at its clean end;
        StreamAborted for the writer's abort; StreamTruncated when the byte
        stream ends first.  Grants credit as the C reader does (once W/2
        was consumed) unless grant is False."""
        st = self._in.get(sid)
        if st is None:
            raise pp.UsageError(f"stream {sid} is not an open stream of the peer")
        deadline = self._deadline(timeout)
        while not st.chunks and st.end is None:
            try:
                self._pump(deadline)
            except pp.EndOfStream:
                raise StreamTruncated(f"stream {sid}: the byte stream ended before the "
                                      f"stream's end") from None
        if st.chunks:
            c = st.chunks.popleft()
            st.buffered -= len(c)
            st.unacked += len(c)
            if grant and st.unacked >= self.stream_window // 2:
                self.grant(sid, st.unacked)
            return c
        code, text = st.end
        if code:
            raise StreamAborted(f"stream {sid} aborted by the writer: code {code}: {text}",
                                code, text)
        return b""

    def grant(self, sid, n):
        st = self._in[sid]
        st.allowed += n
        st.unacked = max(0, st.unacked - n)
        self._send_env(self.pb.Envelope(credit=self.pb.StreamCredit(stream=sid, bytes=n)),
                       "a credit")

    def buffered(self, sid):
        """Bytes of sid received and not yet read."""
        return self._in[sid].buffered

    def pump_for(self, seconds):
        """Reads and handles frames for that long (or until the byte stream
        ends), without consuming anything."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self._pump(deadline)
        except pp.Timeout:
            pass

    def cancel_stream(self, sid, code, text=""):
        st = self._in.pop(sid, None)
        if st is None:
            raise pp.UsageError(f"stream {sid} is not an open stream of the peer")
        self._send_env(self.pb.Envelope(cancel=self.pb.StreamCancel(
            stream=sid, error_code=code, error_message=pp.cut_utf8(text, pp.DETAIL_MAX))),
            "a cancel")
