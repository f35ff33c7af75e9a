"""Left behind in the process group a search driver was started in, when the driver moves its local Ray into a
group of its own: a stop sent to that group (a supervisor's killpg, `kill -- -PGID` of a job script, `timeout`)
still reaches the driver, as the signal SIGNUM (runtime.RELAYED), and not Ray's processes. Run by path with
`python -I` (no gradprom import, a few milliseconds); it ends when the driver closes its stdin or exits.

    python -I group_relay.py DRIVER_PID SIGNUM
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys


def main() -> None:
    driver, relayed = int(sys.argv[1]), int(sys.argv[2])

    def relay(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):  # the driver already ended
            os.kill(driver, relayed)

    for stop in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(stop, relay)
    sys.stdin.buffer.read()  # until the driver closes its end (or exits); signals interrupt and resume the read


if __name__ == "__main__":
    main()
