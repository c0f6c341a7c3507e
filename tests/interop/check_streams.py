#!/usr/bin/python3
"""Streams (protocol 1.2) between a Python parent written from
docs/PROTOCOL.md with stock protobuf (stream_peer.py) and the C library
(stream_child.c, which uses include/pbpipe/pbp_stream.h).

    check_streams.py <stream_child> [--case NAME ...]

Each case spawns a new child and ends with the child's exit status 0.
"""
import argparse
import os
import pathlib
import sys
import time

sys.dont_write_bytecode = True     # no __pycache__ in the source tree
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import pbpipe_peer as pp      # noqa: E402
import stream_peer as sp      # noqa: E402

pb, demo = pp.load_generated("pbpipe_pb2", "demo_pb2")
GREETING = demo.GREETING
PATTERN = bytes(range(251))


class Failed(Exception):
    pass


def check(what, cond):
    print(("ok: " if cond else "FAIL: ") + what)
    if not cond:
        raise Failed(what)


def pattern(n, start=0):
    """n bytes of the C child's pattern: byte i is i % 251."""
    k = start % 251
    reps = (k + n) // 251 + 1
    return (PATTERN * reps)[k:k + n]


def fnv1a(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def greeting(text):
    return demo.Greeting(text=text).SerializeToString()


class Child:
    def __init__(self, exe, fp, max_frame=None, cls=sp.StreamChannel, **kw):
        args = [str(max_frame)] if max_frame else []
        self.proc, self.ch = pp.spawn(exe, args, fingerprint=fp, channel_class=cls,
                                      types={GREETING: demo.Greeting},
                                      max_frame=max_frame or pp.DEFAULT_MAX_FRAME, **kw)
        self.ch.handshake()

    def say(self, text):
        self.ch.send_raw(GREETING, greeting(text))

    def answer(self, timeout=30):
        ev = self.ch.next_event(timeout)
        check(f"the child answers with a plain greeting (type {ev.type}, stream {ev.stream})",
              ev.type == GREETING and ev.stream == 0)
        text = demo.Greeting.FromString(ev.payload).text
        print(f"   child: {text!r}")
        return text

    def finish(self):
        self.ch.goodbye()
        try:
            rc = self.proc.wait(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.ch.close()
        check(f"the child exits with status 0 (got {rc})", rc == 0)


def case_to_c(exe, fp):
    """5 MiB and 3 MiB streams to C with 64 KiB frames, interleaved with a
    message; C checks length and FNV-1a."""
    c = Child(exe, fp, max_frame=64 * 1024)
    check(f"C sent minor {c.ch.peer_hello.minor} and stream_window "
          f"{c.ch.peer_hello.stream_window}",
          c.ch.peer_hello.minor == 2 and c.ch.peer_hello.stream_window >= 256)
    a, b = os.urandom(5 << 20), os.urandom(3 << 20)
    s1 = c.ch.open_stream(GREETING, greeting("sink"))
    check("the first stream id is 1", s1 == 1)
    half = len(a) // 2
    n = c.ch.write_stream(s1, a[:half])
    check(f"a 2.5 MiB write went as {n} chunks (frames of at most 64 KiB)", n >= 40)
    c.ch.write_stream(s1, a[half:])
    c.ch.end_stream(s1)
    check("the child read all of stream 1", c.answer() == f"sink {len(a)} {fnv1a(a):016x}")
    s2 = c.ch.open_stream(GREETING, greeting("sink"))
    c.ch.write_stream(s2, b[:1 << 20])
    c.say("hello between chunks")
    c.ch.write_stream(s2, b[1 << 20:])
    c.ch.end_stream(s2)
    check("the child read all of stream 2", c.answer() == f"sink {len(b)} {fnv1a(b):016x}")
    check("then it received the message sent between its chunks (not a command)",
          c.answer() == "unknown command")
    c.finish()


def case_from_c(exe, fp):
    """A 6 MiB stream from C, read through a 64 KiB window with 64 KiB
    frames: the C writer keeps to the window (this peer fails it
    otherwise) and the data is the pattern."""
    c = Child(exe, fp, max_frame=64 * 1024, stream_window=64 * 1024)
    n = 6 << 20
    c.say(f"send {n}")
    ev = c.ch.next_event(30)
    check("the child opens a stream with header 'data'",
          ev.stream == 1 and demo.Greeting.FromString(ev.payload).text == "data")
    got = bytearray()
    while True:
        chunk = c.ch.read_stream(ev.stream)
        if not chunk:
            break
        got += chunk
    check(f"{len(got)} bytes arrived, the pattern", bytes(got) == pattern(n))
    check("the child reports the stream sent", c.answer() == f"sent {n}")
    check(f"{c.ch.frames_seen[6]} StreamData frames, one StreamEnd",
          c.ch.frames_seen[6] >= n // (64 * 1024) and c.ch.frames_seen[7] == 1)
    c.finish()


def case_window(exe, fp):
    """Backpressure: a reader that does not read gets at most its window;
    reading then lets the rest through."""
    w = 32 * 1024
    c = Child(exe, fp, stream_window=w)
    n = 1 << 20
    c.say(f"send {n}")
    ev = c.ch.next_event(30)
    c.ch.pump_for(0.5)
    held = c.ch.buffered(ev.stream)
    check(f"without credit the writer stopped at the window: {held} of {w} bytes", held == w)
    got = bytearray()
    while True:
        chunk = c.ch.read_stream(ev.stream)
        if not chunk:
            break
        got += chunk
    check("with credit the rest came, the pattern", bytes(got) == pattern(n))
    check("the child reports the stream sent", c.answer() == f"sent {n}")
    c.finish()


def case_c_holds(exe, fp):
    """A C reader that does not read: the Python writer is held to C's
    window, then drains."""
    c = Child(exe, fp)
    w = c.ch.peer_hello.stream_window
    s = c.ch.open_stream(GREETING, greeting("hold"))
    check("the child holds the stream", c.answer() == "holding")
    data = os.urandom(w)
    c.ch.write_stream(s, data)
    st = c.ch._out[s]
    check(f"after {w} bytes (the window) no credit is left: {st.credit}", st.credit == 0)
    try:
        c.ch.write_stream(s, b"x", timeout=0.5)
        check("a write past the window waits for credit", False)
    except pp.Timeout:
        check("a write past the window waits for credit (timed out)", True)
    c.say("drain")
    rest = os.urandom(300_000)
    c.ch.write_stream(s, rest)
    c.ch.end_stream(s)
    all_ = data + rest
    check("the child drained everything",
          c.answer() == f"sink {len(all_)} {fnv1a(all_):016x}")
    c.finish()


def case_abort_and_cancel(exe, fp):
    """Both ways of ending a stream with an error, both directions."""
    c = Child(exe, fp)
    # The C writer aborts: the reader sees StreamEnd with its code.
    c.say("abort 100000")
    ev = c.ch.next_event(30)
    got = bytearray()
    try:
        while True:
            chunk = c.ch.read_stream(ev.stream)
            check("no clean end before the abort", bool(chunk))
            got += chunk
    except sp.StreamAborted as e:
        check(f"the abort carries code 9 and its text ({e.code}, {e.text!r})",
              e.code == 9 and e.text == "child aborts")
    check("the data before the abort arrived", bytes(got) == pattern(100000))
    check("the child reports the abort", c.answer() == "aborted-sent 100000")
    # The Python writer aborts: C sees PBP_EREMOTE.
    s = c.ch.open_stream(GREETING, greeting("sink"))
    c.ch.write_stream(s, b"y" * 5000)
    c.ch.end_stream(s, 42, "python aborts")
    text = c.answer()
    check("C reports the writer's code and text", text.startswith("aborted 42 ")
          and "python aborts" in text)
    # The C reader cancels: the Python writer is told.
    s = c.ch.open_stream(GREETING, greeting("cancel 200000"))
    try:
        for _ in range(100):
            c.ch.write_stream(s, b"z" * 65536)
        check("the writer learns of the cancel", False)
    except sp.StreamCancelled as e:
        check(f"the cancel carries code 7 and its text ({e.code}, {e.text!r})",
              e.code == 7 and e.text == "child cancels")
    check("the child says where it cancelled", c.answer().startswith("cancelled-after "))
    # The Python reader cancels: the C writer gets PBP_ECANCELED.
    c.say("send 50000000")
    ev = c.ch.next_event(30)
    c.ch.read_stream(ev.stream)
    c.ch.cancel_stream(ev.stream, 5, "python cancels")
    text = c.answer()
    check("C's write fails with the reader's code and text",
          text.startswith("send-failed ") and " 5 " in text and "python cancels" in text)
    c.finish()


def case_truncated(exe, fp):
    """The child exits in the middle of a stream: its reader sees the
    stream truncated, not a clean end."""
    c = Child(exe, fp)
    c.say("cut 70000")
    ev = c.ch.next_event(30)
    got = bytearray()
    try:
        while True:
            chunk = c.ch.read_stream(ev.stream)
            check("no clean end", bool(chunk))
            got += chunk
    except sp.StreamTruncated:
        check("the stream is reported truncated", True)
    check("the bytes sent before arrived", bytes(got) == pattern(70000))
    rc = c.proc.wait(timeout=20)
    c.ch.close()
    check(f"the child exited 0 ({rc})", rc == 0)


class Peer11(sp.StreamChannel):
    """A 1.1 peer: minor 1, no stream_window, no 1.2 bodies understood."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.minor = 1

    def _hello_extra(self):
        return {}


def case_old_peer(exe, fp):
    """C opens no stream to a 1.1 peer: PBP_ENOTSUP, and no 1.2 frame."""
    c = Child(exe, fp, cls=Peer11)
    c.say("open")
    text = c.answer()
    check(f"pbp_stream_open fails with PBP_ENOTSUP ({text!r})",
          text == "open-failed the peer does not accept streams")
    check("only Messages arrived", set(c.ch.frames_seen) == {3})
    c.finish()


CASES = {
    "to-c": case_to_c, "from-c": case_from_c, "window": case_window,
    "c-holds": case_c_holds, "abort-cancel": case_abort_and_cancel,
    "truncated": case_truncated, "old-peer": case_old_peer,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("child")
    ap.add_argument("--case", action="append", choices=sorted(CASES))
    args = ap.parse_args()
    proto_dir = os.environ.get("PBPIPE_PROTO_DIR") or \
        pathlib.Path(__file__).resolve().parents[2] / "proto"
    fp = pp.schema_fingerprint(proto_dir, ["demo.proto"])
    failed = []
    for name in args.case or CASES:
        print(f"case {name}:")
        t = time.monotonic()
        try:
            CASES[name](args.child, fp)
            print(f"ok: {name} ({time.monotonic() - t:.1f} s)")
        except (Failed, pp.PbpipeError, pp.EndOfStream, OSError) as e:
            print(f"FAIL: {name}: {type(e).__name__}: {e}")
            failed.append(name)
    if failed:
        print(f"{len(failed)} failed: {' '.join(failed)}")
        return 1
    print(f"all {len(CASES if not args.case else args.case)} cases passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
