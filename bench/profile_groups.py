"""Where a live server's time goes, by part: a py-spy profile grouped.

Record the server while a bench step runs (py-spy is a bench extra; it
attaches to a running process without stopping it), then group:

    python bench/call_rate.py --targets pbx --tests cps --rates 250 &
    py-spy record -p "$(pgrep -f 'pbx serve')" -d 20 -r 200 -f raw -o /tmp/calls.raw --nonblocking
    python bench/profile_groups.py /tmp/calls.raw

Each sample is one thread's stack. Samples where the thread waits (the
event loop in its poll, the database writer on its condition) are idle and
left out; the rest are grouped by the deepest project module on the stack
(the database writer's thread as a whole), and each group's share of the
busy samples is printed, then the functions with the most samples of
their own. The README's table "Where the time goes" was made this way.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Final

# A leaf frame that means the thread was waiting, not working.
IDLE_LEAVES: Final = ("Runner.run", "Condition.wait", "BackgroundWriter._run", "Event.wait", "Thread.join")

# (group, what a frame's file starts with), tried in order on each frame
# from the leaf up; the first frame in a project file decides.
GROUPS: Final = (
    ("logging", ("structlog/", "pbx/log.py")),
    ("SIP parsing", ("pbx/sip/parser.py",)),
    ("digest authentication", ("pbx/sip/digest.py", "pbx/registrar/auth.py")),
    ("SIP transactions", ("pbx/sip/transaction.py",)),
    ("SIP sessions and dialogs", ("pbx/sip/session", "pbx/sip/dialog")),
    ("SIP messages, endpoint", ("pbx/sip/",)),
    ("UDP send and receive", ("pbx/transport/",)),
    ("registrar", ("pbx/registrar/",)),
    ("CDR hand-off on the loop", ("pbx/calls/cdr", "pbx/cdr/")),
    ("call layer", ("pbx/calls/",)),
    ("routing", ("pbx/routing/",)),
    ("server glue", ("pbx/server/",)),
    ("other project code", ("pbx/",)),
)
_FILE: Final = re.compile(r"\(([^()]*?)(?::\d+)?\)$")


def samples(path: str) -> Iterator[tuple[list[str], int]]:
    """(frames root first, count) of each line of py-spy's raw output."""
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if stack and count.isdigit():
                yield stack.split(";"), int(count)


def group_of(frames: list[str]) -> str:
    if any("BackgroundWriter" in frame for frame in frames):
        return "the database writer's thread"
    for frame in reversed(frames):
        match = _FILE.search(frame)
        if match is None:
            continue
        where = match.group(1)
        for name, prefixes in GROUPS:
            if where.startswith(prefixes):
                return name
    return "interpreter, event loop, other"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("raw", help="py-spy record -f raw output")
    parser.add_argument("--top", type=int, default=12, help="functions listed by their own samples (default 12)")
    args = parser.parse_args(argv)
    groups: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = idle = 0
    for frames, count in samples(args.raw):
        total += count
        if frames[-1].startswith(IDLE_LEAVES):
            idle += count
            continue
        groups[group_of(frames)] += count
        own[re.sub(r":\d+\)$", ")", frames[-1])] += count
    busy = total - idle
    if busy <= 0:
        print("no busy samples", file=sys.stderr)
        return 1
    print(f"{total} samples, {100 * idle / total:.0f} % idle; shares of the {busy} busy ones")
    print("| part | share |\n|---|---:|")
    for name, count in groups.most_common():
        print(f"| {name} | {100 * count / busy:.1f} % |")
    print("\n| function (own samples) | share |\n|---|---:|")
    for name, count in own.most_common(args.top):
        print(f"| {name} | {100 * count / busy:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
