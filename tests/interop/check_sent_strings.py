#!/usr/bin/python3
"""Stock protobuf (Python's, on libprotobuf) parses the strings pbpipe sends.

Usage: check_sent_strings.py MAKE_CORPUS

Runs the C library's encoder through fuzz/make_corpus into a scratch
directory and parses every envelope_diff/seed-sent-* body with the
protoc-generated pbpipe.Envelope.  A proto3 string that is not valid UTF-8
makes the whole parse fail, so each must parse; its text must be what
Python's own decoder makes of the input ('replace': one U+FFFD per maximal
ill-formed subpart), cut to the longest prefix of whole characters within
127 bytes.
"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.environ["PBPIPE_PY_GEN"])
import pbpipe_pb2 as pb  # noqa: E402

ILL = b"bad \xff\xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 cut \xe2\x82"
# name -> (which string, what the application passed in)
CASES = {
    "sent-errmsg-ill-formed": ("error", ILL),
    "sent-errmsg-long": ("error", b"a" + "\u20ac".encode() * 100),
    "sent-errmsg-long-ill-formed": ("error", b"\xfe" * 200),
    "sent-goodbye-ill-formed": ("detail", ILL),
    # the detail array holds 127 bytes: the last character cut in three
    "sent-goodbye-cut": ("detail", (b"x" + "\U0001F600".encode() * 50)[:127]),
}


def expected(raw):
    text, out = raw.decode("utf-8", "replace"), ""
    for ch in text:
        if len((out + ch).encode()) > 127:
            break
        out += ch
    return out


def main():
    with tempfile.TemporaryDirectory() as tmp:
        for d in ("frame", "handshake", "message", "envelope_diff"):
            os.mkdir(os.path.join(tmp, d))
        subprocess.run([sys.argv[1], tmp], check=True)
        seen = 0
        for name, (field, raw) in CASES.items():
            with open(os.path.join(tmp, "envelope_diff", "seed-" + name), "rb") as f:
                body = f.read()
            env = pb.Envelope.FromString(body)  # raises on invalid UTF-8
            got = env.message.error_message if field == "error" else env.goodbye.detail
            want = expected(raw)
            if got != want:
                sys.exit(f"{name}: got {got!r}, want {want!r}")
            if len(got.encode()) > 127:
                sys.exit(f"{name}: {len(got.encode())} bytes")
            seen += 1
        from google.protobuf.internal import api_implementation
        print(f"check_sent_strings: {seen} frames parsed "
              f"(protobuf backend {api_implementation.Type()})")


if __name__ == "__main__":
    main()
