"""Wall time of each DVC stage of a pipeline run, as a user runs it.

Runs the command (default `make pipeline-mirror`), passes its output through, notes when DVC
starts each stage and prints the time each took and the total. Stages DVC finds unchanged take
no time: run it in a fresh clone, or add `-f` to force every stage (`dvc repro -f`,
`dvc exp run -f`). Usage:

    python benchmarks/bench_pipeline.py [-- command ...]
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

STAGE = re.compile(r"Running stage '([^']+)'")


def main() -> int:
    cmd = sys.argv[1:] or ["make", "pipeline-mirror"]
    cmd = cmd[1:] if cmd[0] == "--" else cmd
    start = time.perf_counter()
    marks: list[tuple[str, float]] = []
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as run:
        for line in run.stdout:
            sys.stdout.write(line)
            if found := STAGE.search(line):
                marks.append((found.group(1), time.perf_counter()))
    end = time.perf_counter()
    print(f"\n`{' '.join(cmd)}`: exit {run.returncode}, {_clock(end - start)} in all\n")
    print("| stage | time |\n|---|---|")
    ends = [t for _, t in marks[1:]] + [end]
    for (name, begun), finished in zip(marks, ends, strict=True):
        print(f"| {name} | {_clock(finished - begun)} |")
    if marks:
        print(f"| before the first stage | {_clock(marks[0][1] - start)} |")
    return run.returncode


def _clock(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s"


if __name__ == "__main__":
    sys.exit(main())
