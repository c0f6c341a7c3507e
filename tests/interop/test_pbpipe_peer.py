#!/usr/bin/python3
"""Self-test of pbpipe_peer against docs/PROTOCOL.md: the worked examples of
section 8 byte for byte, the invalid frames, the Hello checks, the limits, the
end-of-stream classification and the handshake deadline.  No C code runs here;
the peer is raw bytes on a pipe.

    PBPIPE_PY_GEN=<build>/tests/interop/py /usr/bin/python3 test_pbpipe_peer.py
"""
import os
import pathlib
import subprocess
import sys
import time
import unittest

HERE = pathlib.Path(__file__).resolve().parent
sys.dont_write_bytecode = True     # no __pycache__ in the source tree
sys.path.insert(0, str(HERE))
import pbpipe_peer as pp  # noqa: E402

pb = pp.load_generated("pbpipe_pb2")
ROOT = HERE.parents[1]
FP = 0x0123456789ABCDEF
h = bytes.fromhex


def hello_env(**kw):
    f = dict(magic=pp.MAGIC, major=1, pid=1234, pointer_bits=64, max_frame=4194304,
             schema_fingerprint=FP)
    f.update(kw)
    return pb.Envelope(hello=pb.Hello(**f))


def frame(env_or_bytes):
    b = env_or_bytes if isinstance(env_or_bytes, bytes) else env_or_bytes.SerializeToString()
    return pp.encode_varint(len(b)) + b


class RawPeer:
    """A Channel under test, its peer being raw fds: self.w feeds the
    channel, self.r holds what it sent."""

    def __init__(self, first=None, max_frame=4194304, timeout=2.0, handshake=True, types=None):
        self.r, ch_w = os.pipe()
        ch_r, self.w = os.pipe()
        self.ch = pp.Channel(ch_r, ch_w, fingerprint=FP, max_frame=max_frame,
                             handshake_timeout=timeout, types=types, pb=pb)
        if first is not None:
            self.send(first)
        if handshake:
            self.ch.handshake()

    def send(self, data):
        os.write(self.w, data)

    def end(self):
        if self.w is not None:
            os.close(self.w)
            self.w = None

    def sent(self):
        os.set_blocking(self.r, False)
        try:
            return os.read(self.r, 1 << 20)
        except BlockingIOError:
            return b""

    def close(self):
        self.end()
        os.close(self.r)
        self.ch.close()


class Base(unittest.TestCase):
    def peer(self, *a, **kw):
        p = RawPeer(*a, **kw)
        self.addCleanup(p.close)
        return p

    def ready(self, **kw):
        """A channel past the handshake (peer max_frame 4 MiB)."""
        return self.peer(frame(hello_env()), **kw)


class WorkedExamples(unittest.TestCase):
    """PROTOCOL.md section 8, encoded with the generated classes."""

    def test_hello(self):
        # The 1.1 dump; the 1.0 Hello this peer sends is the same without
        # minor (18 01).
        self.assertEqual(frame(hello_env(minor=1)), h(
            "1e 0a 1c 0d 50 50 42 50 10 01 18 01 20 d2 09 28 40 30 80 80 80 02"
            " 39 ef cd ab 89 67 45 23 01"))
        self.assertEqual(frame(hello_env()), h(
            "1c 0a 1a 0d 50 50 42 50 10 01 20 d2 09 28 40 30 80 80 80 02"
            " 39 ef cd ab 89 67 45 23 01"))

    def test_messages(self):
        m = lambda **kw: frame(pb.Envelope(message=pb.Message(**kw)))  # noqa: E731
        self.assertEqual(m(type=1, payload=b"ab"), h("08 1a 06 08 01 1a 02 61 62"))
        self.assertEqual(m(type=150, id=300, payload=b"ab"),
                         h("0c 1a 0a 08 96 01 10 ac 02 1a 02 61 62"))
        self.assertEqual(m(type=7), h("04 1a 02 08 07"))

    def test_goodbye(self):
        g = lambda **kw: frame(pb.Envelope(goodbye=pb.Goodbye(**kw)))  # noqa: E731
        self.assertEqual(g(reason=pb.Goodbye.DONE, detail="bye"), h("09 12 07 08 01 12 03 62 79 65"))
        self.assertEqual(g(), h("02 12 00"))

    def test_varint(self):
        self.assertEqual(pp.encode_varint(0), b"\x00")
        self.assertEqual(pp.encode_varint(300), h("ac 02"))
        self.assertEqual(pp.frame_prefix(h("84 00")), (4, 2))
        self.assertEqual(pp.frame_prefix(h("ff ff ff ff 0f")), (0xFFFFFFFF, 5))
        self.assertIsNone(pp.frame_prefix(h("80 80")))
        for bad in ("80 80 80 80 80 00", "80 80 80 80 10", "ff ff ff ff 1f"):
            with self.assertRaises(pp.ProtocolError):
                pp.frame_prefix(h(bad))

    def test_overhead(self):
        # "A Message envelope adds at most 29 bytes to its payload."
        env = pb.Envelope(message=pb.Message(type=pp.UINT32_MAX, id=pp.UINT64_MAX,
                                             payload=b"p" * 300))
        self.assertLessEqual(env.ByteSize() - 300, 29)

    def test_fingerprint_reference(self):
        fp = pp.schema_fingerprint(ROOT / "tests/proto", ["pbptest.proto"])
        self.assertEqual(fp, 0xDB83874127A8FF75)
        # Absolute paths work too, and the demo schema is stable.
        proto = ROOT / "proto"
        self.assertEqual(pp.schema_fingerprint(proto, [proto / "demo.proto"]),
                         pp.schema_fingerprint(proto, ["demo.proto"]))


class Decoding(Base):
    def test_examples_decode(self):
        p = self.ready()
        p.send(h("08 1a 06 08 01 1a 02 61 62"))
        p.send(h("0c 1a 0a 08 96 01 10 ac 02 1a 02 61 62"))
        p.send(h("04 1a 02 08 07"))
        p.send(h("08 1a 06 08 07 10 00 1a 00"))        # non-canonical
        p.send(h("84 00 1a 02 08 07"))                  # long length prefix
        p.send(h("0a 1a 08 1a 02 61 62 10 05 08 09"))   # any order, last type wins
        p.send(h("06 1a 04 08 07 28 01"))               # unknown field in Message
        p.send(h("06 1a 02 08 07 30 01"))               # unknown field in Envelope
        p.send(h("0a 1a 08 08 03 20 07 1a 02 08 2a"))   # a 1.1 reply: reply_to skipped
        p.send(h("0c 1a 0a 08 02 20 07 28 2a 32 02 6e 6f"))  # a 1.1 error reply
        got = [p.ch.recv_raw() for _ in range(10)]
        self.assertEqual(got, [(1, 0, b"ab"), (150, 300, b"ab"), (7, 0, b""), (7, 0, b""),
                               (7, 0, b""), (9, 5, b"ab"), (7, 0, b""), (7, 0, b""),
                               (3, 0, h("08 2a")), (2, 0, b"")])
        p.send(h("09 12 07 08 01 12 03 62 79 65"))
        p.send(frame(pb.Envelope(message=pb.Message(type=1))))   # after Goodbye: ignored
        with self.assertRaises(pp.EndOfStream) as cm:
            p.ch.recv_raw()
        self.assertEqual((cm.exception.goodbye.reason, cm.exception.goodbye.detail),
                         (pb.Goodbye.DONE, "bye"))
        with self.assertRaises(pp.EndOfStream):         # sticky
            p.ch.recv_raw()

    def bad(self, data, exc):
        p = self.ready()
        p.send(data)
        with self.assertRaises(exc) as cm:
            p.ch.recv_raw()
        with self.assertRaises(exc):                    # sticky
            p.ch.recv_raw()
        return cm.exception

    def test_invalid_frames(self):
        self.bad(h("00"), pp.ProtocolError)                        # no body
        self.bad(h("02 1a 00"), pp.ProtocolError)                  # type 0
        self.bad(h("08 1a 02 08 07 12 02 08 01"), pp.ProtocolError)  # two bodies
        self.bad(h("08 1a 02 08 07 1a 02 08 07"), pp.ProtocolError)  # same body twice
        self.bad(h("02 30 01"), pp.ProtocolError)                  # only unknown fields
        self.bad(h("04 22 02 08 05"), pp.ProtocolError)            # Sync: not for a 1.0 peer
        self.bad(h("80 80 80 80 80 00"), pp.ProtocolError)         # prefix > 5 bytes
        self.bad(h("80 80 80 80 10"), pp.ProtocolError)            # prefix > 32 bits
        e = self.bad(frame(hello_env()), pp.ProtocolError)         # second Hello
        self.assertIn("second Hello", str(e))

    def test_decode_errors(self):
        self.bad(h("02 00 01"), pp.DecodeError)                    # field number 0
        self.bad(h("04 1a 02 00 01"), pp.DecodeError)              # field 0 in Message
        self.bad(h("02 18 01"), pp.DecodeError)                    # body as a varint
        self.bad(h("06 1a 04 08 07 11 00"), pp.DecodeError)        # truncated field
        self.bad(h("0b 1a 09 08 07 11 00 00 00 00 00 00 00 00"), pp.DecodeError)  # id as fixed64
        self.bad(h("08 1a 06 08 80 80 80 80 10"), pp.DecodeError)  # type over 32 bits
        self.bad(h("04 1a 05 08 07"), pp.DecodeError)              # Message runs past the end
        self.bad(h("04 23 24 1a 00"), pp.DecodeError)              # a group: not skippable
        detail = b"d" * 128
        self.bad(frame(b"\x12" + pp.encode_varint(len(detail) + 3) + b"\x12\x80\x01" + detail),
                 pp.DecodeError)

    def test_goodbye_leniency(self):
        p = self.ready()
        p.send(h("09 12 07 08 07 12 03 ff 62 79"))      # unknown reason, bad UTF-8
        with self.assertRaises(pp.EndOfStream) as cm:
            p.ch.recv_raw()
        self.assertEqual(cm.exception.goodbye.reason, 7)
        self.assertEqual(cm.exception.goodbye.detail, "\ufffdby")
        detail = b"d" * 127
        p = self.ready()
        p.send(frame(b"\x12\x81\x01\x12\x7f" + detail))
        with self.assertRaises(pp.EndOfStream) as cm:
            p.ch.recv_raw()
        self.assertEqual(cm.exception.goodbye.detail, "d" * 127)


class EndOfStreamClassification(Base):
    def test_clean_between_frames(self):
        p = self.ready()
        p.send(h("04 1a 02 08 07"))
        p.end()
        self.assertEqual(p.ch.recv_raw(), (7, 0, b""))
        with self.assertRaises(pp.EndOfStream) as cm:
            p.ch.recv_raw()
        self.assertIsNone(cm.exception.goodbye)
        self.assertNotIsInstance(cm.exception, pp.PbpipeError)

    def test_inside_prefix(self):
        p = self.ready()
        p.send(h("80"))
        p.end()
        with self.assertRaisesRegex(pp.TruncatedError, "frame header"):
            p.ch.recv_raw()

    def test_inside_body(self):
        p = self.ready()
        p.send(h("04 1a 02"))
        p.end()
        with self.assertRaisesRegex(pp.TruncatedError, r"frame body \(2 of 4"):
            p.ch.recv_raw()

    def test_before_hello(self):
        for data in (b"", h("1c 0a 1a 0d"), h("9c")):
            p = self.peer(data, handshake=False)
            p.end()
            with self.assertRaises(pp.TruncatedHandshake):
                p.ch.handshake()


class Handshake(Base):
    def refused(self, env, field, **kw):
        p = self.peer(frame(env), handshake=False, **kw)
        with self.assertRaises(pp.HandshakeError) as cm:
            p.ch.handshake()
        self.assertEqual(cm.exception.field, field)
        with self.assertRaises(pp.UsageError):
            p.ch.send_raw(1, b"")
        return cm.exception

    def test_our_hello(self):
        p = self.ready(max_frame=65536)
        env = pb.Envelope.FromString(p.sent()[1:])
        self.assertEqual(env.hello.magic, pp.MAGIC)
        self.assertEqual((env.hello.major, env.hello.minor), (1, 0))
        self.assertEqual(env.hello.max_frame, 65536)
        self.assertEqual(env.hello.schema_fingerprint, FP)
        self.assertEqual(env.hello.pid, os.getpid())
        self.assertEqual(p.ch.limit, 65536)

    def test_checks(self):
        self.refused(pb.Envelope(goodbye=pb.Goodbye()), "first frame")
        self.refused(pb.Envelope(message=pb.Message(type=1)), "first frame")
        self.refused(hello_env(magic=0x50505042), "magic")
        self.refused(hello_env(major=2), "major")
        e = self.refused(hello_env(schema_fingerprint=1), "schema_fingerprint")
        self.assertIn("0x0123456789abcdef", str(e))
        self.assertIn("0x0000000000000001", str(e))
        self.refused(hello_env(max_frame=255), "max_frame")
        self.refused(hello_env(max_frame=0), "max_frame")
        # Order: magic before major before fingerprint before max_frame.
        self.refused(hello_env(magic=1, major=2, schema_fingerprint=1, max_frame=1), "magic")
        self.refused(hello_env(major=2, schema_fingerprint=1, max_frame=1), "major")
        self.refused(hello_env(schema_fingerprint=1, max_frame=1), "schema_fingerprint")

    def test_accepted(self):
        p = self.peer(frame(hello_env(minor=5, max_frame=256)))
        self.assertEqual(p.ch.limit, 256)
        p = self.peer(frame(hello_env(max_frame=pp.UINT32_MAX)), max_frame=300)
        self.assertEqual(p.ch.limit, 300)
        # Unknown Hello fields (a later minor) are skipped; 1024 bytes is the
        # first-frame limit.
        hello = hello_env().hello.SerializeToString()

        def padded(pad):
            inner = hello + b"\xc2\x3e" + pp.encode_varint(pad) + b"z" * pad
            return b"\x0a" + pp.encode_varint(len(inner)) + inner
        body = padded(max(n for n in range(1024) if len(padded(n)) <= 1024))
        self.assertEqual(len(body), 1024)
        self.peer(frame(body))

    def test_first_frame_limit(self):
        p = self.peer(pp.encode_varint(1025), handshake=False)   # no body follows
        with self.assertRaisesRegex(pp.FrameTooLarge, "1025 bytes exceeds the limit of 1024"):
            p.ch.handshake()

    def test_deadline(self):
        p = self.peer(handshake=False, timeout=0.3)
        t0 = time.monotonic()
        with self.assertRaises(pp.Timeout):
            p.ch.handshake()
        self.assertLess(time.monotonic() - t0, 2)
        with self.assertRaises(pp.UsageError):
            p.ch.recv_raw()

    def test_no_send_before_handshake(self):
        p = self.peer(handshake=False)
        with self.assertRaises(pp.UsageError):
            p.ch.send_raw(1, b"x")
        with self.assertRaises(pp.UsageError):
            p.ch.goodbye()
        self.assertEqual(p.sent(), b"")

    def test_not_a_peer(self):
        # A child that exits at once: end of stream before its Hello.
        proc, ch = pp.spawn("/bin/true", fingerprint=FP, pb=pb)
        with ch, self.assertRaises(pp.TruncatedHandshake):
            ch.handshake()
        self.assertEqual(proc.wait(), 0)
        # A child that never answers: the deadline.
        proc, ch = pp.spawn("/bin/sleep", ["30"], fingerprint=FP, pb=pb, handshake_timeout=0.3)
        try:
            with ch, self.assertRaises(pp.Timeout):
                ch.handshake()
        finally:
            proc.kill()
            proc.wait()


class Limits(Base):
    def test_receive_limit_before_body(self):
        p = self.peer(frame(hello_env(max_frame=256)))
        self.assertEqual(p.ch.limit, 256)
        p.send(pp.encode_varint(257))                    # the body never comes
        with self.assertRaisesRegex(pp.FrameTooLarge, "257 bytes exceeds the limit of 256"):
            p.ch.recv_raw(timeout=5)

    def test_send_limit(self):
        p = self.peer(frame(hello_env(max_frame=256)))
        p.sent()
        # 256-byte body: 1 + 2 (envelope) + 2 (type) + 1 + 2 (payload) + 248.
        p.ch.send_raw(1, b"a" * 248)
        self.assertEqual(len(p.sent()), 2 + 256)
        with self.assertRaises(pp.FrameTooLarge):
            p.ch.send_raw(1, b"a" * 249)
        self.assertEqual(p.sent(), b"")                  # nothing written
        p.ch.send_raw(1, b"ok")                          # still usable
        self.assertEqual(p.sent(), h("08 1a 06 08 01 1a 02 6f 6b"))

    def test_recv_timeout_loses_nothing(self):
        p = self.ready()
        p.send(h("04 1a"))
        with self.assertRaises(pp.Timeout):
            p.ch.recv_raw(timeout=0.1)
        p.send(h("02 08 07"))
        self.assertEqual(p.ch.recv_raw(timeout=1), (7, 0, b""))


class Sending(Base):
    def test_goodbye_and_half_close(self):
        p = self.ready()
        p.sent()
        p.ch.goodbye(pb.Goodbye.SHUTDOWN, "é" * 64)       # 128 bytes: cut to 126
        data = p.sent()
        n, hdr = pp.frame_prefix(data)
        self.assertEqual(len(data), hdr + n)
        env = pb.Envelope.FromString(data[hdr:])
        self.assertEqual(env.goodbye.reason, pb.Goodbye.SHUTDOWN)
        self.assertEqual(env.goodbye.detail, "é" * 63)
        os.set_blocking(p.r, True)
        self.assertEqual(os.read(p.r, 1), b"")            # our write side is closed
        with self.assertRaises(pp.UsageError):
            p.ch.send_raw(1, b"")
        p.send(h("04 1a 02 08 07"))                        # receiving still works
        self.assertEqual(p.ch.recv_raw(), (7, 0, b""))

    def test_peer_gone(self):
        p = self.ready()
        os.close(p.r)
        p.r = os.open("/dev/null", os.O_RDONLY)
        with self.assertRaises(pp.PeerGone):
            p.ch.send_raw(1, b"x")

    def test_bad_arguments(self):
        p = self.ready()
        for t in (0, 1 << 32):
            with self.assertRaises(pp.UsageError):
                p.ch.send_raw(t, b"")
        with self.assertRaises(pp.UsageError):
            pp.Channel(0, 1, fingerprint=1, max_frame=255, pb=pb)


class Typed(Base):
    def test_typed(self):
        demo = pp.load_generated("demo_pb2")
        p = self.ready(types={demo.GREETING: demo.Greeting})
        p.sent()
        p.ch.send(demo.Greeting(text="ab"), id=3)
        self.assertEqual(p.sent(), h("0c 1a 0a 08 01 10 03 1a 04 0a 02 61 62"))
        p.send(frame(pb.Envelope(message=pb.Message(type=1, payload=h("0a 02 68 69")))))
        p.send(frame(pb.Envelope(message=pb.Message(type=2, payload=b"x"))))
        p.send(frame(pb.Envelope(message=pb.Message(type=1, payload=h("0a 05 68")))))
        p.send(frame(pb.Envelope(message=pb.Message(type=1))))
        self.assertEqual(p.ch.recv().message.text, "hi")
        with self.assertRaises(pp.UnknownType):
            p.ch.recv()
        with self.assertRaises(pp.PayloadDecodeError):
            p.ch.recv()
        self.assertEqual(p.ch.recv().message.text, "")   # channel still usable


if __name__ == "__main__":
    unittest.main(verbosity=2)
