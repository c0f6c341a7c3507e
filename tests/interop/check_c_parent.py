#!/usr/bin/python3
"""Runs the C pbpipe-parent with py_child.py as its child and checks the
transcript: both greetings, a clean end, "child exited with status 0".
Then the negative case: py_child.py with a wrong fingerprint makes the C
parent fail, both sides naming both fingerprints.

    check_c_parent.py <dir with pbpipe-parent>
"""
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
CHILD = str(HERE / "py_child.py")
fails = 0


def check(what, cond):
    global fails
    print(("ok: " if cond else "FAIL: ") + what)
    fails += not cond


def run(parent, env=None):
    r = subprocess.run([parent, "--child", CHILD], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=50,
                       env=dict(os.environ, **(env or {})))
    print(f"--- exit {r.returncode}; stdout:\n{r.stdout}--- stderr:\n{r.stderr}---")
    return r


def main():
    parent = str(pathlib.Path(sys.argv[1], "pbpipe-parent"))
    r = run(parent)
    lines = r.stdout.splitlines()
    check("parent exits 0", r.returncode == 0)
    check("parent spawned the Python child, handshake done",
          any(x.startswith(f"parent: spawned {CHILD} (pid ") and x.endswith("handshake done")
              for x in lines))
    check("the Python child prints the parent's greeting",
          'child: received "Hello from Process A!"' in lines)
    check("the parent prints the Python child's answer",
          'parent: received "Hello from Process B!"' in lines)
    check("the Python child sees the parent's Goodbye",
          "child: end of stream (parent said goodbye), exiting" in lines)
    check('the parent reports "child exited with status 0"',
          "parent: child exited with status 0" in lines)
    check("nothing on stderr", r.stderr == "")

    wrong = "0123456789abcdef"
    r = run(parent, {"PY_CHILD_FINGERPRINT": wrong})
    check("with a wrong child fingerprint the parent fails", r.returncode == 1)
    check("the parent names both fingerprints and the child's exit status 1",
          "schema fingerprint mismatch" in r.stderr and f"peer's 0x{wrong}" in r.stderr
          and "exited with status 1" in r.stderr)
    check("the Python child names both fingerprints",
          f"py_child: handshake failed: schema fingerprint mismatch: ours 0x{wrong}" in r.stderr)
    if fails:
        print(f"{fails} checks failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
