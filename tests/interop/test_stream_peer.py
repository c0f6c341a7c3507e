#!/usr/bin/python3
"""Self-test of stream_peer (protocol 1.2) against docs/PROTOCOL.md: the
stream dumps of section 8 byte for byte, and two Python peers talking
streams over two pipes (windows, credit, cancel, abort, the violations a
reader must refuse).  No C code runs here.

    PBPIPE_PY_GEN=<build>/tests/interop/py /usr/bin/python3 test_stream_peer.py
"""
import os
import pathlib
import re
import sys
import threading
import unittest

HERE = pathlib.Path(__file__).resolve().parent
sys.dont_write_bytecode = True     # no __pycache__ in the source tree
sys.path.insert(0, str(HERE))
import pbpipe_peer as pp  # noqa: E402
import stream_peer as sp  # noqa: E402

pb = pp.load_generated("pbpipe_pb2")
ROOT = HERE.parents[1]
FP = 0x0123456789ABCDEF


def pair(window_a=1 << 20, window_b=1 << 20, max_frame=pp.DEFAULT_MAX_FRAME):
    """Two StreamChannels over two pipes, handshake done."""
    ab_r, ab_w = os.pipe()
    ba_r, ba_w = os.pipe()
    a = sp.StreamChannel(ba_r, ab_w, fingerprint=FP, stream_window=window_a,
                         max_frame=max_frame)
    b = sp.StreamChannel(ab_r, ba_w, fingerprint=FP, stream_window=window_b,
                         max_frame=max_frame)
    t = threading.Thread(target=b.handshake)
    t.start()
    a.handshake()
    t.join(10)
    return a, b


def frame(env):
    body = env.SerializeToString()
    return pp.encode_varint(len(body)) + body


class Dumps(unittest.TestCase):
    """PROTOCOL.md section 8, the 1.2 lines: each dump is what stock
    protobuf writes, and decodes by the section 3 rules."""

    def test_stream_dumps(self):
        text = (ROOT / "docs" / "PROTOCOL.md").read_text()
        sec = text[text.index("**Streams (1.2).**"):text.index("## 9.")]
        lines = re.findall(r"^((?:[0-9a-f]{2} )+[0-9a-f]{2})\s{2,}(\S.*)$", sec, re.M)
        self.assertEqual(len(lines), 6, sec)
        want = [
            pb.Envelope(message=pb.Message(type=4, payload=bytes.fromhex("0a0178"), stream=1)),
            pb.Envelope(data=pb.StreamData(stream=1, chunk=b"abc")),
            pb.Envelope(credit=pb.StreamCredit(stream=1, bytes=524288)),
            pb.Envelope(end=pb.StreamEnd(stream=1)),
            pb.Envelope(end=pb.StreamEnd(stream=1, error_code=5, error_message="disk")),
            pb.Envelope(cancel=pb.StreamCancel(stream=1, error_code=7, error_message="no")),
        ]
        for (hexs, _), env in zip(lines, want):
            raw = bytes.fromhex(hexs.replace(" ", ""))
            self.assertEqual(raw, frame(env), hexs)
            n, hdr = pp.frame_prefix(raw)
            kind, fields = pp.check_envelope(raw[hdr:], minor=2)
            self.assertEqual(pp.envelope_from_fields(pb, kind, fields), env)

    def test_new_bodies_are_no_body_to_a_10_peer(self):
        body = frame(pb.Envelope(data=pb.StreamData(stream=1, chunk=b"abc")))[1:]
        with self.assertRaises(pp.ProtocolError):
            pp.check_envelope(body, minor=0)

    def test_stream_strings_are_bounded(self):
        body = pb.Envelope(end=pb.StreamEnd(stream=1, error_code=1,
                                            error_message="x" * 128)).SerializeToString()
        with self.assertRaises(pp.DecodeError):
            pp.check_envelope(body, minor=2)


class Streams(unittest.TestCase):
    def setUp(self):
        self.chans = []

    def tearDown(self):
        for c in self.chans:
            c.close()

    def mk(self, **kw):
        a, b = pair(**kw)
        self.chans += [a, b]
        return a, b

    def test_a_stream_larger_than_the_frame_limit(self):
        a, b = self.mk(max_frame=4096, window_b=8192)
        data = os.urandom(300_000)
        got = bytearray()

        def reader():
            ev = b.next_event(10)
            while True:
                c = b.read_stream(ev.stream)
                if not c:
                    break
                got.extend(c)
        t = threading.Thread(target=reader)
        t.start()
        s = a.open_stream(1, b"hdr")
        n = a.write_stream(s, data)
        a.end_stream(s)
        t.join(20)
        self.assertFalse(t.is_alive())
        self.assertEqual(bytes(got), data)
        self.assertGreaterEqual(n, 300_000 // 4096)

    def test_the_window_holds_the_writer(self):
        a, b = self.mk(window_b=1000)
        s = a.open_stream(1)
        a.write_stream(s, b"q" * 1000)
        with self.assertRaises(pp.Timeout):
            a.write_stream(s, b"q", timeout=0.3)
        ev = b.next_event(5)
        b.pump_for(0.2)
        self.assertEqual(b.buffered(ev.stream), 1000)

    def test_a_writer_past_the_window_is_a_protocol_error(self):
        a, b = self.mk(window_b=1000)
        s = a.open_stream(1)
        a._out[s].credit = 5000          # a writer that ignores the window
        a.write_stream(s, b"q" * 2000)
        b.next_event(5)
        with self.assertRaises(pp.ProtocolError):
            b.pump_for(1)

    def test_data_for_a_stream_never_opened_is_a_protocol_error(self):
        a, b = self.mk()
        a._write_frame(pb.Envelope(data=pb.StreamData(stream=3, chunk=b"x"))
                       .SerializeToString(), None, "data")
        with self.assertRaises(pp.ProtocolError):
            b.next_event(5)

    def test_cancel_and_abort(self):
        a, b = self.mk()
        s = a.open_stream(1)
        ev = b.next_event(5)
        b.cancel_stream(ev.stream, 7, "enough")
        self.assertEqual(a.wait_cancel(s, 5), (7, "enough"))
        with self.assertRaises(sp.StreamCancelled):
            a.write_stream(s, b"more")
        s2 = a.open_stream(1)
        a.write_stream(s2, b"abc")
        a.end_stream(s2, 9, "broken")
        ev = b.next_event(5)
        self.assertEqual(ev.stream, s2)
        self.assertEqual(b.read_stream(s2), b"abc")
        with self.assertRaises(sp.StreamAborted) as cm:
            b.read_stream(s2)
        self.assertEqual((cm.exception.code, cm.exception.text), (9, "broken"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
