"""Free loopback ports for the services tests start, and stopping them again."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(size: int, *, extra_offsets: tuple[int, ...] = (), low: int = 20000,
                    high: int = 40000, attempts: int = 200) -> int:
    """A base port P such that P..P+size-1 (and P+offset for each extra offset) are free."""
    rng = random.Random()
    for _ in range(attempts):
        base = rng.randrange(low, high - size)
        wanted = [base + i for i in range(size)] + [base + i + off for i in range(size) for off in extra_offsets]
        if all(port_is_free(p) for p in wanted):
            return base
    raise RuntimeError(f"no block of {size} free loopback ports found in {low}..{high}")


def stop_process_group(process: subprocess.Popen[bytes], *, grace_s: float = 15.0) -> None:
    """SIGTERM the process group a service was started in (``start_new_session=True``), SIGKILL after
    ``grace_s`` seconds, and reap it."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
