#!/usr/bin/env python3
"""Checks the shape of lib/ (docs/ARCHITECTURE.md) from the compiled objects.

usage: layers.py SOURCE_DIR NM OBJECT...

1. Calls point down: each object's undefined symbols are matched to the
   object that defines them, and a file may only use files of its own
   layer or below; the file graph has no cycle.
2. Only lib/os/ includes operating-system headers.
3. No file in lib/ is over 800 lines.
Prints every violation and exits 1 if there is one.
"""
import os
import re
import subprocess
import sys

# Layer of each folder (or file) of lib/, bottom first.
LAYERS = [
    ("os/", 0),
    ("errors.c", 0),
    ("wire/", 1),
    ("engine/", 2),
    ("session/", 3),
    ("api/channel.c", 4),
    ("api/bytes.c", 4),
    ("api/serve.c", 5),
    ("api/call.c", 5),
    ("api/handles.c", 5),
    ("api/child.c", 5),
    ("api/streams.c", 5),
    ("pool/", 6),
]
OS_HEADERS = re.compile(
    r'#\s*include\s*<(unistd|poll|fcntl|signal|spawn|pthread|dirent|windows|winternl|'
    r'sys/[a-z_]+|io|process|direct)\.h>')
MAX_LINES = 800


def layer_of(rel):
    for prefix, rank in LAYERS:
        if rel == prefix or (prefix.endswith("/") and rel.startswith(prefix)):
            return rank
    return None


def source_of(obj, lib):
    """lib-relative source path of a CMake object file (.../lib/x/y.c.o)."""
    m = re.search(r"/lib/(.+\.c)\.(o|obj)$", obj)
    if m and os.path.exists(os.path.join(lib, m.group(1))):
        return m.group(1)
    return None


def main():
    src, nm = sys.argv[1], sys.argv[2]
    objs = [o for a in sys.argv[3:] for o in a.split(";") if o]
    lib = os.path.join(src, "lib")
    bad = []
    defined, undefined = {}, {}
    for obj in objs:
        rel = source_of(obj, lib)
        if rel is None:
            continue  # generated wire code
        out = subprocess.run([nm, obj], capture_output=True, text=True, check=True).stdout
        undefined[rel] = set()
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "U":
                undefined[rel].add(parts[1])
            elif len(parts) == 3 and parts[1] in "TDBRC":
                defined[parts[2]] = rel
    if len(undefined) < 10:
        bad.append("only %d library objects found: wrong arguments?" % len(undefined))
    graph = {}
    for rel, syms in undefined.items():
        graph[rel] = set()
        for s in syms:
            dep = defined.get(s)
            if dep is None or dep == rel:
                continue
            graph[rel].add(dep)
            lf, ld = layer_of(rel), layer_of(dep)
            if lf is None or ld is None:
                bad.append("%s or %s is in no layer (tests/layers.py LAYERS)" % (rel, dep))
            elif ld > lf:
                bad.append("lib/%s calls %s from lib/%s, a layer above it" % (rel, s, dep))
    # Cycles between files.
    state = {}

    def visit(n, path):
        state[n] = 1
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                bad.append("cycle: " + " -> ".join(path[path.index(d):] + [d]))
            elif d not in state:
                visit(d, path + [d])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    # OS headers and sizes.
    for root, _, files in os.walk(lib):
        for f in files:
            if not f.endswith((".c", ".h")):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, lib)
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
            n = text.count("\n")
            if n > MAX_LINES:
                bad.append("lib/%s has %d lines (at most %d)" % (rel, n, MAX_LINES))
            if not rel.startswith("os/"):
                for m in OS_HEADERS.finditer(text):
                    bad.append("lib/%s includes <%s.h>: only lib/os/ calls the OS" %
                               (rel, m.group(1)))
    for b in bad:
        print("layers: " + b)
    print("layers: %d objects, %d dependencies between files, %d problems" %
          (len(undefined), sum(len(v) for v in graph.values()), len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
