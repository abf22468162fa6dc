"""Prompt lookup: (language, phrase) → audio, an admin's recording first.

The shipped prompts live in ``pbx/ivr/prompts/<language>/<phrase>.wav``
(made by :mod:`pbx.ivr.make_prompts`). An admin replaces any of them by
putting a WAV file of any common format at the same relative path under
the override directory (``<override>/vi/welcome.wav``); it is used from the
next call on, converted once and cached (:class:`pbx.media.audio_file.AudioCache`).

A language without a prompt of that name falls back to ``fallback``
(English), so a partly recorded new language still speaks. Names are
checked before they touch the file system: a language or phrase that is not
lower-case letters, digits and ``_``/``-`` is refused, so a name from a
dialplan can never reach outside these directories.
"""

from __future__ import annotations

import re
from pathlib import Path

import structlog

from pbx.media.audio_file import Audio, AudioCache, AudioFileError
from pbx.media.make_music import DEFAULT_MUSIC

log = structlog.get_logger("pbx.ivr")

SHIPPED_DIR = Path(__file__).with_name("prompts")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


class PromptNotFound(LookupError):
    """No file for a prompt, in its language, the fallback or an override."""


class PromptLibrary:
    def __init__(self, override_dir: Path | None = None, *, shipped_dir: Path = SHIPPED_DIR,
                 fallback: str = "en", cache: AudioCache | None = None) -> None:
        self.override_dir = override_dir
        self.shipped_dir = shipped_dir
        self.fallback = fallback
        self.cache = cache or AudioCache()

    def path(self, language: str, phrase: str) -> Path:
        """The file that will be played for ``phrase`` in ``language``."""
        for name in (language, phrase):
            if not _NAME.fullmatch(name):
                raise PromptNotFound(f"not a prompt name: {name!r}")
        tried = []
        for lang in dict.fromkeys((language, self.fallback)):
            for base in (self.override_dir, self.shipped_dir):
                if base is None:
                    continue
                candidate = base / lang / f"{phrase}.wav"
                if candidate.is_file():
                    return candidate
                tried.append(str(candidate))
        raise PromptNotFound(f"no prompt {phrase!r} for {language!r} (looked for {', '.join(tried)})")

    def load(self, language: str, phrase: str) -> Audio:
        """The prompt's audio, 8 kHz mono; reads the file on first use (run
        it in a thread from the event loop)."""
        return self.cache.load(self.path(language, phrase))

    def music(self, music: str | None) -> Audio | None:
        """Music on hold: the file ``music``, or the shipped tune when it is
        None, missing or unusable (logged); None when neither can be read.
        Blocking: run it in a thread from the event loop."""
        if music is not None:
            try:
                return self.cache.load(Path(music))
            except AudioFileError as err:
                log.error("music_on_hold_unusable", file=music, error=str(err))
        try:
            return self.cache.load(DEFAULT_MUSIC)
        except AudioFileError as err:
            log.error("music_on_hold_unusable", file=str(DEFAULT_MUSIC), error=str(err))
            return None
