"""TensorFlow's start-up chatter kept off the terminal, its errors kept on it.

TensorFlow 2.21 writes its loading messages (oneDNN, "Could not find cuda drivers", a failed
``cuInit`` on a machine without a GPU) from C++ straight to file descriptor 2, before absl's logging
reads ``TF_CPP_MIN_LOG_LEVEL``, once per native library it loads. Only a redirection of the
descriptor itself, while TensorFlow loads and finds its devices, keeps them out (no TensorFlow
import here: the callers load it inside ``stderr_filtered()``).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

#: set to 1 to see everything TensorFlow writes while it loads
SHOW_ALL = "MNISTLAB_TF_STARTUP_LOGS"
#: what TensorFlow prints on every start, not about this run: dropped
CHATTER = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:. ]+\d+ \S+:\d+\]"  # absl's INFO and WARNING lines
    r"|E\d{4} [\d:. ]+\d+ cuda_(platform|executor|diagnostics)\.cc:\d+\]"  # no GPU: cuInit failed
    r"|To enable the following instructions: .* rebuild TensorFlow"
)


def filtered(text: str) -> str:
    """``text`` without TensorFlow's start-up chatter; every other line kept, in order."""
    return "".join(line for line in text.splitlines(keepends=True) if not CHATTER.match(line))


@contextmanager
def stderr_filtered() -> Iterator[None]:
    """Collect what is written to descriptor 2 in the block, then write it back without chatter
    (also when the block raises)."""
    if os.environ.get(SHOW_ALL) == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = filtered(captured.read().decode(errors="replace"))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()
