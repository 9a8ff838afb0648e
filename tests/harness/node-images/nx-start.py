"""The lucid/mongo-wire image's entrypoint: nx-27017, started past a stale PID file.

nx-27017 refuses to start while its PID file names a live process. In a container the
server is PID 1, and the file outlives it when it sits in a volume (an emptyDir survives a
container restart, a data volume a power cut): after a kill the new server, PID 1 again,
reads "1", finds that PID alive (itself) and exits with "already running" for good. A PID
file is stale unless it names another live nx-27017 process: it is removed, then the
server runs with the arguments given, unchanged.
"""

import os
import sys


def pid_file(argv):
    """The --pid-file argument (either form), or nx-27017's default."""
    for i, arg in enumerate(argv):
        if arg == "--pid-file" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--pid-file="):
            return arg.split("=", 1)[1]
    from nx_27017.wire_protocol import PID_FILE

    return PID_FILE


def is_stale(path):
    try:
        with open(path) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return True  # unreadable or garbage: nothing it names can be running
    if pid == os.getpid():
        return True  # our previous incarnation, in this PID namespace
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"nx_27017" not in f.read()
    except OSError:
        return True  # no such process


def main():
    path = pid_file(sys.argv[1:])
    if os.path.exists(path) and is_stale(path):
        print(f"removing stale PID file {path}", file=sys.stderr)
        os.remove(path)
    from nx_27017.nx_27017 import main as serve

    sys.exit(serve())


if __name__ == "__main__":
    main()
