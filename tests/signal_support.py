"""Children that a test stops with SIGINT get SIGINT's default action back:
a suite started in the background (``cmd &`` in a script, some CI runners)
inherits SIGINT ignored, and Python then installs no KeyboardInterrupt."""

import signal


def interruptible() -> None:
    """``preexec_fn`` for subprocess.Popen."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
