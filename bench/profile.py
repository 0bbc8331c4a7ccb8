"""Where the suite's CPU goes under load: py-spy samples of every service, summed by function.

`python -m bench.run --profile SECONDS` records each service with `py-spy record --format raw` (collapsed
stacks) while the load runs, keeps the raw files (speedscope and flamegraph.pl read them), and prints the
functions with the most samples, on their own (self) and with everything they call (inclusive).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::\d+)?\)$")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        sys.exit("bench: --profile needs py-spy (pip install py-spy)")
    return found


def _short(path: str) -> str:
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def frame_name(frame: str) -> str:
    """`func (path:line)` as `func (short/path)`: samples of one function summed over its lines."""
    match = _FRAME.match(frame)
    if match is None:
        return frame
    return f"{match['func']} ({_short(match['file'])})"


@dataclass
class Profile:
    """Collapsed stacks of one service: sample counts by function, self and inclusive."""

    total: int
    own: Counter[str]
    inclusive: Counter[str]

    @classmethod
    def parse(cls, text: str) -> Profile:
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = 0
        for line in text.splitlines():
            match = _LINE.match(line)
            if match is None:
                continue
            count = int(match["count"])
            frames = [frame_name(f) for f in match["stack"].split(";") if f]
            if not frames:
                continue
            total += count
            own[frames[-1]] += count
            for name in set(frames[1:]):  # the first frame is the process/thread label
                inclusive[name] += count
        return cls(total, own, inclusive)

    def summary(self, top: int) -> str:
        if not self.total:
            return "    (no samples)"

        def rows(counter: Counter[str]) -> list[str]:
            return [f"    {n / self.total * 100:5.1f}%  {name}" for name, n in counter.most_common(top)]

        return "\n".join(["   self:", *rows(self.own), "   inclusive:", *rows(self.inclusive)])


def record(pids: Mapping[str, int], seconds: float, out_dir: Path, rate: int = 250) -> dict[str, Profile]:
    """Sample every process in `pids` for `seconds` at once; collapsed stacks and flame graphs into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    binary = py_spy()
    procs = {
        name: subprocess.Popen(
            [
                binary,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, round(seconds))),
                "--rate",
                str(rate),
                "--nonblocking",
                "--subprocesses",
                "--format",
                "raw",
                "--output",
                str(out_dir / f"{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for name, pid in pids.items()
    }
    profiles = {}
    for name, proc in procs.items():
        _, err = proc.communicate()
        path = out_dir / f"{name}.txt"
        if proc.returncode != 0 or not path.exists():
            print(f"bench: py-spy could not record {name}: {err.decode(errors='replace')[-300:]}", file=sys.stderr)
            continue
        profiles[name] = Profile.parse(path.read_text())
    return profiles
