"""Regenerate the shipped prompts: pbx/ivr/prompts/<language>/<phrase>.wav.

    python -m pbx.ivr.make_prompts [--only en] [--phrase NAME ...] [--out DIR]

Needs Debian's ``espeak-ng`` (the voices) and ``sox`` (conversion): ``make
deps`` installs both. Each phrase of :mod:`pbx.ivr.phrases` is spoken by
espeak-ng, then sox trims the silence at both ends, lowers it 6 dB (headroom
for the filter), removes rumble below 100 Hz, normalises to -3 dBFS and
writes 8 kHz mono μ-law (8 KB a second: the form we send, so the shipped
set, about 4.2 MB for 63 phrases in three languages, stays small).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pbx.ivr.phrases import LANGUAGES, PHRASES, VOICES

PROMPTS_DIR = Path(__file__).with_name("prompts")
SPEED = {"en": 160, "vi": 160, "zh": 185}
"""Words per minute: espeak-ng's default 175 is hurried for English on a
phone line; its Mandarin voice is slow and takes a higher setting."""


def make(language: str, phrase: str, text: str, out_dir: Path, work: Path) -> Path:
    spoken = work / f"{language}-{phrase}.wav"
    subprocess.run(["espeak-ng", "-v", VOICES[language], "-s", str(SPEED[language]), "-w", str(spoken), text],
                   check=True)
    target = out_dir / language / f"{phrase}.wav"
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["sox", str(spoken), "-r", "8000", "-c", "1", "-e", "u-law", "-b", "8", str(target),
                    "silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%", "reverse", "gain", "-6",
                    "highpass", "100", "norm", "-3", "pad", "0.05", "0.1"], check=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=LANGUAGES, action="append", help="languages to make (default: all)")
    parser.add_argument("--phrase", action="append", metavar="NAME",
                        help="phrases to make (default: all); espeak-ng versions differ, so regenerate only new ones")
    parser.add_argument("--out", type=Path, default=PROMPTS_DIR)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.phrase or ()) - set(PHRASES))
    if unknown:
        print(f"no such phrase: {', '.join(unknown)}", file=sys.stderr)
        return 2
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        print(f"missing {' and '.join(missing)}: run make deps "
              "(apt-get install espeak-ng sox)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        for language in args.only or LANGUAGES:
            for phrase, texts in PHRASES.items():
                if args.phrase and phrase not in args.phrase:
                    continue
                print(make(language, phrase, texts[language], args.out, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
