"""Summarise py-spy's raw (collapsed-stack) output: where the samples went.

    python bench/profile_summary.py PROFILE.txt [--top 25]

Prints, per function (file:line dropped), the share of samples in which it was
the innermost frame (self) and in which it was anywhere on the stack (total),
and the share of samples per thread when the file was recorded with --threads.
"""

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def parse(path: Path) -> list[tuple[list[str], int]]:
    """Each line is `frame;frame;...;frame COUNT`, outermost frame first."""
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append(([short(f) for f in stack.split(";")], int(count)))
    return stacks


def short(frame: str) -> str:
    """`func (path/to/module.py:12)` -> `func (module.py)`."""
    match = FRAME.match(frame)
    if match is None:
        return frame
    return f"{match['name']} ({Path(match['file']).name})"


def tally(stacks: list[tuple[list[str], int]]) -> tuple[Counter[str], Counter[str]]:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for frames, count in stacks:
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    return own, total


def show(title: str, counts: Counter[str], samples: int, top: int) -> None:
    print(f"\n{title}")
    for frame, count in counts.most_common(top):
        print(f"{100 * count / samples:6.1f}%  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Summarise a py-spy raw profile.")
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    stacks = parse(args.profile)
    samples = sum(count for _, count in stacks) or 1
    own, total = tally(stacks)
    threads = Counter({t: c for t, c in total.items() if t.startswith(("thread ", "process "))})
    print(f"{samples} samples in {args.profile}")
    show("by thread", threads, samples, args.top)
    show("self", own, samples, args.top)
    show("total (on the stack)", total, samples, args.top)


if __name__ == "__main__":
    main()
