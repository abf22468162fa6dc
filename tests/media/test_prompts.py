from __future__ import annotations

import struct
import wave
from pathlib import Path

import pytest

from pbx.ivr.phrases import LANGUAGES, PHRASES
from pbx.ivr.prompts import PromptLibrary, PromptNotFound
from pbx.media.codecs import rms


def test_every_phrase_ships_in_every_language_as_8k_mono_speech() -> None:
    library = PromptLibrary()
    for language in LANGUAGES:
        for phrase in PHRASES:
            path = library.path(language, phrase)
            assert path.parent.name == language
            header = path.read_bytes()[:36]     # sox writes the fmt chunk first
            assert header[12:16] == b"fmt "
            encoding, channels, rate = struct.unpack_from("<HHI", header, 20)
            assert (encoding, channels, rate) == (7, 1, 8000)   # μ-law, mono, 8 kHz
            audio = library.load(language, phrase)
            # A word said alone (a digit, "and") is short; anything longer is a sentence.
            shortest = 0.25 if phrase.startswith("digit_") or phrase == "vm_and" else 0.5
            assert shortest < audio.seconds < 12, (language, phrase)
            assert rms(audio.linear) > 1000, (language, phrase)


def test_admin_override_and_fallback(tmp_path: Path) -> None:
    own = tmp_path / "vi" / "welcome.wav"
    own.parent.mkdir()
    with wave.open(str(own), "wb") as writer:
        writer.setnchannels(2)
        writer.setsampwidth(2)
        writer.setframerate(44100)
        writer.writeframes(b"\x10\x00\x10\x00" * 44100)
    library = PromptLibrary(tmp_path)
    assert library.path("vi", "welcome") == own
    assert abs(library.load("vi", "welcome").seconds - 1.0) < 0.01
    assert library.path("vi", "goodbye").parent.parent != tmp_path          # not overridden: shipped
    assert library.path("ja", "goodbye") == library.path("en", "goodbye")   # unknown language: English


@pytest.mark.parametrize("name", ["../../etc/passwd", "Welcome", "", "a/b", "x" * 100])
def test_names_never_reach_outside(name: str) -> None:
    library = PromptLibrary()
    with pytest.raises(PromptNotFound, match="not a prompt name"):
        library.path("en", name)
    with pytest.raises(PromptNotFound, match="not a prompt name"):
        library.path(name, "welcome")


def test_missing_prompt_says_where_it_looked() -> None:
    with pytest.raises(PromptNotFound, match="no prompt 'nothing' for 'vi'"):
        PromptLibrary().path("vi", "nothing")


def test_the_script_regenerates_a_prompt(tmp_path: Path) -> None:
    from pbx.ivr.make_prompts import PROMPTS_DIR, main

    assert main(["--only", "en", "--out", str(tmp_path)]) == 0
    made = sorted(p.name for p in (tmp_path / "en").iterdir())
    assert made == sorted(f"{phrase}.wav" for phrase in PHRASES)
    # Same tools, same text: the shipped file is what the script makes.
    fresh = PromptLibrary(shipped_dir=tmp_path).load("en", "goodbye")
    shipped = PromptLibrary(shipped_dir=PROMPTS_DIR).load("en", "goodbye")
    assert abs(fresh.seconds - shipped.seconds) < 0.05
    assert rms(fresh.linear) > 1000
