"""docs/benchmarks.md is written by several tools; each owns one marked section and rewrites only that."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

HEADER = """# Benchmarks

Every figure below was measured by the command printed above it, on the machine it names, with its baseline
measured in the same run. Re-run a command to refresh its section; the other sections stay as they are.
"""


def machine_line() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    return f"Measured on {os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, no GPU"


def write_section(path: Path, name: str, body: str) -> None:
    """Replace the ``name`` section (between its markers) or append it; the file is written atomically."""
    from tiefwatch.storage import write_text_atomic

    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else HEADER
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    write_text_atomic(path, text)
