#!/usr/bin/python3
"""py_parent: a Python parent driving the C pbpipe-child (the demo schema).

    py_parent.py --child build/bin/pbpipe-child [--case NAME]... [--header-dirs DIRS]

Cases (default: all):
  greet             greetings of every kind (empty, 255 bytes, UTF-8, sentinel
                    look-alikes, 50 pipelined), replies checked, Goodbye, child exit 0
  small-limit       our max_frame 256: the effective limit is 256 in both
                    directions; a body of 256 bytes goes, 257 is refused unsent
  bad-fingerprint   a wrong fingerprint: our HandshakeError names both values,
                    the C child names both too and exits 1
  truncated-body    a frame cut inside its body, then end of stream: child exits 1
  truncated-prefix  a frame cut inside its length prefix: child exits 1
  oversize          a length over the child's 4 MiB limit, body never sent:
                    the child exits 1 without waiting for the body
  no-hello          we close our stream before our Hello: child exits 1
  gone              we close both ends at once: child exits 1, truncated handshake

--header-dirs (:-separated) are searched for the C build's demo_fingerprint.h,
whose DEMO_SCHEMA_FINGERPRINT must equal the fingerprint computed here.

Environment: PBPIPE_PY_GEN (generated *_pb2.py), PBPIPE_PROTO_DIR (default
../../proto from this file), PBPIPE_PROTOC.
"""
import argparse
import os
import pathlib
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True     # no __pycache__ in the source tree
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import pbpipe_peer as pp  # noqa: E402

pb, demo = pp.load_generated("pbpipe_pb2", "demo_pb2")
TYPES = {demo.GREETING: demo.Greeting}
GREETING = "Hello from Process A!"
REPLY = "Hello from Process B!"
C_DEFAULT_MAX_FRAME = 4 << 20
WAIT = 20                      # seconds for a child to exit


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)
    print(f"  ok: {what}")


def start(child, fp, **kw):
    kw.setdefault("handshake_timeout", 10.0)
    return pp.spawn(child, fingerprint=fp, types=TYPES, pb=pb,
                    popen={"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}, **kw)


def finish(proc, ch=None):
    """Waits for the child, then closes our ends; returns (code, stdout,
    stderr).  Our read side stays open until the child has exited, so that
    its writes cannot fail with EPIPE and change what it reports."""
    try:
        out, err = proc.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise Failed(f"the child did not exit within {WAIT} s; stderr: {err.decode()!r}")
    finally:
        if ch is not None:
            ch.close()
    out, err = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    if err:
        print("  child stderr: " + err.rstrip().replace("\n", "\n  child stderr: "))
    return proc.returncode, out, err


def exchange(ch, text, id=0):
    ch.send(demo.Greeting(text=text), id=id)
    m = ch.recv(timeout=WAIT)
    if m.type != demo.GREETING or m.message.text != REPLY:
        raise Failed(f"unexpected reply to {text[:30]!r}: type {m.type}, {m.message}")


def case_greet(child, fp, args):
    proc, ch = start(child, fp, max_frame=1 << 20)
    h = ch.handshake()
    check(h.magic == pp.MAGIC and h.major == 1,
          f"peer Hello: magic, version {h.major}.{h.minor} (ours {pp.MAJOR}.{pp.MINOR}; "
          f"minors may differ)")
    check(h.schema_fingerprint == fp, f"peer fingerprint 0x{h.schema_fingerprint:016x}")
    check(h.pid == proc.pid, f"peer pid {h.pid} is the child's")
    check(h.pointer_bits in (32, 64), f"peer pointer_bits {h.pointer_bits}")
    check(h.max_frame == C_DEFAULT_MAX_FRAME, f"peer max_frame {h.max_frame} (C default)")
    check(ch.limit == 1 << 20, f"effective limit min(ours, peer's) = {ch.limit}")
    texts = [GREETING, "", "x" * 255, "héllo wörld ✓ 你好", "END", "SYNC\nEND\n",
             "\x00 inside"[:0] + "tab\tand quote\""]
    for i, t in enumerate(texts):
        exchange(ch, t, id=[0, 1, 300, (1 << 64) - 1][i % 4])
    check(True, f"{len(texts)} greetings answered (empty, 255 bytes, UTF-8, sentinels)")
    for i in range(50):
        ch.send(demo.Greeting(text=f"pipelined {i}"), id=i + 1)
    for i in range(50):
        m = ch.recv(timeout=WAIT)
        if m.message.text != REPLY:
            raise Failed(f"pipelined reply {i}: {m.message}")
    check(True, "50 pipelined greetings, 50 replies")
    ch.goodbye(pb.Goodbye.DONE, "done")
    try:
        ch.recv(timeout=WAIT)
        raise Failed("a message after our Goodbye")
    except pp.EndOfStream as e:
        check(e.goodbye is None, "clean end of stream from the child after our Goodbye")
    code, out, _ = finish(proc, ch)
    lines = out.splitlines()
    check(code == 0, f"child exit code {code}")
    check(f'child: received "{GREETING}"' in lines, "child printed the greeting")
    check(f'child: received "{"x" * 255}"' in lines, "child printed the 255-byte greeting")
    check('child: received "héllo wörld ✓ 你好"' in lines, "child printed the UTF-8 greeting")
    check(lines.count('child: received ""') == 1, "child printed the empty greeting")
    check(sum(x.startswith('child: received "pipelined ') for x in lines) == 50,
          "child printed 50 pipelined greetings")
    check(lines[-1] == "child: end of stream (parent said goodbye), exiting",
          "child saw our Goodbye")


def case_small_limit(child, fp, args):
    proc, ch = start(child, fp, max_frame=256)
    ch.handshake()
    check(ch.limit == 256, f"effective limit {ch.limit} = min(256, {ch.peer_hello.max_frame})")

    def body_len(text):
        return pb.Envelope(message=pb.Message(
            type=demo.GREETING, payload=demo.Greeting(text=text).SerializeToString())).ByteSize()
    fit = max(n for n in range(256) if body_len("y" * n) <= 256)
    check(body_len("y" * fit) == 256, f"a {fit}-byte text makes a 256-byte body")
    try:
        ch.send(demo.Greeting(text="y" * (fit + 1)))
        raise Failed("a 257-byte body was sent")
    except pp.FrameTooLarge as e:
        check(True, f"257-byte body refused: {e}")
    try:
        ch.send(demo.Greeting(text="x" * 255))
        raise Failed("a 255-byte greeting was sent over a 256-byte limit")
    except pp.FrameTooLarge as e:
        check(True, f"255-byte greeting refused: {e}")
    exchange(ch, "y" * fit)
    check(True, "the 256-byte body went through and was answered")
    exchange(ch, GREETING)
    check(True, "the channel stays usable after refused sends")
    ch.goodbye()
    code, out, _ = finish(proc, ch)
    check(code == 0, f"child exit code {code}")
    check(out.count("child: received") == 2, "the child received exactly the two sent")


def case_bad_fingerprint(child, fp, args):
    wrong = 0x0123456789ABCDEF if fp != 0x0123456789ABCDEF else 1
    proc, ch = start(child, wrong)
    try:
        ch.handshake()
        raise Failed("handshake with a wrong fingerprint succeeded")
    except pp.HandshakeError as e:
        msg = str(e)
        print(f"  our error: {msg}")
        check(e.field == "schema_fingerprint", "HandshakeError on the fingerprint")
        check(f"0x{wrong:016x}" in msg and f"0x{fp:016x}" in msg,
              "our error names both fingerprints")
    try:
        ch.send(demo.Greeting(text=GREETING))
        raise Failed("send after a failed handshake")
    except pp.UsageError:
        check(True, "no send after a failed handshake")
    code, _, err = finish(proc, ch)
    check(code == 1, f"child exit code {code}")
    check("schema fingerprint mismatch" in err and f"0x{wrong:016x}" in err
          and f"0x{fp:016x}" in err, "the child's error names both fingerprints")


def raw_after_handshake(child, fp, data, close):
    proc, ch = start(child, fp)
    ch.handshake()
    os.write(ch.wfd, data)
    if close:
        ch.close_write()
    return proc, ch


def case_truncated_body(child, fp, args):
    # Prefix 10, then 3 of the 10 bytes.
    proc, ch = raw_after_handshake(child, fp, b"\x0a\x1a\x08\x08", close=True)
    code, _, err = finish(proc, ch)
    check(code == 1, f"child exit code {code}")
    check("end of stream inside a frame body" in err, "child reports a truncated body")


def case_truncated_prefix(child, fp, args):
    proc, ch = raw_after_handshake(child, fp, b"\x80\x80", close=True)
    code, _, err = finish(proc, ch)
    check(code == 1, f"child exit code {code}")
    check("end of stream inside a frame header" in err, "child reports a truncated prefix")


def case_oversize(child, fp, args):
    # The effective limit is the C child's 4 MiB; announce one byte more and
    # keep the stream open: the child must refuse on the prefix alone.
    proc, ch = raw_after_handshake(child, fp, pp.encode_varint(C_DEFAULT_MAX_FRAME + 1),
                                   close=False)
    t0 = time.monotonic()
    try:
        proc.wait(timeout=WAIT)
    except subprocess.TimeoutExpired:
        pass
    check(proc.returncode is not None, f"child exited after {time.monotonic() - t0:.2f} s "
          f"with our stream still open (refused before the body)")
    code, _, err = finish(proc, ch)
    check(code == 1, f"child exit code {code}")
    check("exceeds the limit" in err, "child reports the frame as too large")


def case_no_hello(child, fp, args):
    proc, ch = start(child, fp)
    ch.close_write()
    code, _, err = finish(proc, ch)
    check(code == 1, f"child exit code {code}")
    check("before sending its Hello" in err, "child reports a truncated handshake")


def case_gone(child, fp, args):
    # Both our ends closed before the child starts: whichever end it trips
    # over first (EPIPE on its Hello, or end of stream), it is truncation.
    proc, ch = start(child, fp)
    ch.close()
    code, _, err = finish(proc)
    check(code == 1, f"child exit code {code}")
    check("before sending its Hello" in err, "child reports a truncated handshake")


CASES = {"greet": case_greet, "small-limit": case_small_limit,
         "bad-fingerprint": case_bad_fingerprint, "truncated-body": case_truncated_body,
         "truncated-prefix": case_truncated_prefix, "oversize": case_oversize,
         "no-hello": case_no_hello, "gone": case_gone}


def header_fingerprint(dirs):
    for d in dirs:
        f = pathlib.Path(d, "demo_fingerprint.h")
        if f.is_file():
            m = re.search(r"DEMO_SCHEMA_FINGERPRINT\s+UINT64_C\(0x([0-9a-fA-F]+)\)", f.read_text())
            if m:
                return int(m.group(1), 16), f
    return None, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", required=True, help="the C pbpipe-child")
    ap.add_argument("--case", action="append", choices=sorted(CASES))
    ap.add_argument("--header-dirs", default="", help=":-separated dirs with demo_fingerprint.h")
    args = ap.parse_args()
    proto_dir = os.environ.get("PBPIPE_PROTO_DIR") or \
        pathlib.Path(__file__).resolve().parents[2] / "proto"
    fp = pp.schema_fingerprint(proto_dir, ["demo.proto"])
    print(f"demo schema fingerprint 0x{fp:016x} (protoc {pp.find_protoc()})")
    failed = []
    if args.header_dirs:
        c_fp, where = header_fingerprint([d for d in args.header_dirs.split(os.pathsep) if d])
        if c_fp != fp:
            print(f"FAIL: the C build's fingerprint ({where}) is "
                  f"{'missing' if c_fp is None else hex(c_fp)}, ours 0x{fp:016x}")
            failed.append("fingerprint")
        else:
            print(f"ok: equals DEMO_SCHEMA_FINGERPRINT in {where}")
    for name in args.case or CASES:
        print(f"case {name}:")
        try:
            CASES[name](args.child, fp, args)
            print(f"ok: {name}")
        except (Failed, pp.PbpipeError, pp.EndOfStream, OSError) as e:
            print(f"FAIL: {name}: {type(e).__name__}: {e}")
            failed.append(name)
    if failed:
        print(f"{len(failed)} failed: {' '.join(failed)}")
        return 1
    print("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
