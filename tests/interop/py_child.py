#!/usr/bin/python3
"""py_child: the demo's child side in Python, for the C pbpipe-parent.

    pbpipe-parent --child tests/interop/py_child.py

Takes its two pipe fds as the last two arguments (the fd it writes to, then
the fd it reads from), handshakes with the demo schema, answers every
Greeting with "Hello from Process B!" and exits 0 at the end of the stream
(a Goodbye, or end of stream between frames).  Exits 1 on any error, 2 on
bad arguments, like the C pbpipe-child.

Environment: PBPIPE_PY_GEN (required) is the directory with the generated
pbpipe_pb2.py and demo_pb2.py; PBPIPE_PROTO_DIR (default: ../../proto from
this file) holds demo.proto; PBPIPE_PROTOC is the protoc to compute the
fingerprint with.  For the negative test only, PY_CHILD_FINGERPRINT (hex)
replaces the demo schema fingerprint.
"""
import os
import pathlib
import sys

sys.dont_write_bytecode = True     # no __pycache__ in the source tree
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import pbpipe_peer as pp  # noqa: E402

REPLY = "Hello from Process B!"


def usage(why):
    print(f"py_child: {why}\nusage: py_child.py WRITE_HANDLE READ_HANDLE", file=sys.stderr)
    return 2


def main(argv):
    if len(argv) != 3:
        return usage("expected exactly two handle arguments")
    try:
        pb, demo = pp.load_generated("pbpipe_pb2", "demo_pb2")
        proto_dir = os.environ.get("PBPIPE_PROTO_DIR") or \
            pathlib.Path(__file__).resolve().parents[2] / "proto"
        fp = os.environ.get("PY_CHILD_FINGERPRINT")
        fp = int(fp, 16) if fp else pp.schema_fingerprint(proto_dir, ["demo.proto"])
    except (ImportError, OSError, RuntimeError, ValueError) as e:
        print(f"py_child: {e}", file=sys.stderr)
        return 1
    try:
        ch = pp.Channel.from_argv(argv, fingerprint=fp, types={demo.GREETING: demo.Greeting},
                                  pb=pb)
    except pp.UsageError as e:
        return usage(str(e))
    with ch:
        try:
            ch.handshake()
        except pp.PbpipeError as e:
            print(f"py_child: handshake failed: {e}", file=sys.stderr)
            return 1
        try:
            while True:
                m = ch.recv()
                print(f'child: received "{m.message.text}"', flush=True)
                ch.send(demo.Greeting(text=REPLY), id=m.id)
        except pp.EndOfStream as e:
            if e.goodbye is not None:
                print("child: end of stream (parent said goodbye), exiting", flush=True)
            else:
                print("child: end of stream, exiting", flush=True)
            return 0
        except pp.PbpipeError as e:
            print(f"py_child: {e.code}: {e}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
