"""Running the `one` command as a real program in tests: plainly, or on a pseudo-terminal."""
from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_env(home: Path, **extra) -> dict:
    """The environment of a `one` process: HOME in `home` (so that nothing lands in the real
    ~/Downloads/ONE), the test's ONE_PARAMS_DIR, no ONE_* value of the user's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('ONE_')}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT))
    if os.environ.get('ONE_PARAMS_DIR'):
        env['ONE_PARAMS_DIR'] = os.environ['ONE_PARAMS_DIR']
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run(*args, env: dict, stdin: str | None = None, cwd=None, timeout: float = 120):
    """Run ``python -m one ARGS`` with no terminal: stdin is a pipe (or /dev/null)."""
    return subprocess.run([sys.executable, '-m', 'one', *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=timeout,
                          input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)


def run_tty(*args, env: dict, answers=(), timeout: float = 120,
            columns: int | None = None) -> tuple[int, str]:
    """Run ``python -m one ARGS`` on a pseudo-terminal, answering prompts.

    Parameters
    ----------
    answers : sequence of (str, str)
        (text of the prompt to wait for, line to type), in order.
    columns : int, optional
        Give the terminal this width (a new pseudo-terminal has none: progress bars draw
        nothing on it).

    Returns
    -------
    int, str
        The exit code and everything the terminal showed.
    """
    import pty

    master, slave = pty.openpty()
    if columns:
        import fcntl
        import struct
        import termios

        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 24, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, '-m', 'one', *map(str, args)], stdin=slave,
                            stdout=slave, stderr=slave, env=env, start_new_session=True,
                            close_fds=True)
    os.close(slave)
    shown, start = b'', 0
    pending = list(answers)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f'one {" ".join(map(str, args))} did not finish; the '
                                   f'terminal showed:\n{shown.decode(errors="replace")}')
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the program closed the terminal
                    chunk = b''
                if not chunk:
                    break
                shown += chunk
            while pending and pending[0][0].encode() in shown[start:]:
                start = shown.index(pending[0][0].encode(), start) + len(pending[0][0])
                os.write(master, pending.pop(0)[1].encode() + b'\n')
            if not ready and proc.poll() is not None:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        os.close(master)
    return proc.returncode, shown.decode(errors='replace').replace('\r\n', '\n')
