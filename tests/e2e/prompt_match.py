"""Was this prompt heard? A phone's recording searched for a shipped
prompt by normalised cross-correlation (numpy), so a test tells "you are
number one in the queue" from number two, from music and from silence."""

from __future__ import annotations

import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pbx.ivr.prompts import PromptLibrary


def recorded(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as source:
        assert source.getframerate() == 8000
        return np.frombuffer(source.readframes(source.getnframes()), "<i2").astype(float)


def match(heard: np.ndarray, expected: np.ndarray) -> float:
    """How well ``expected`` occurs somewhere in ``heard``: the peak of the
    normalised cross-correlation over the places it fits whole (1.0:
    exactly; other speech or music well below)."""
    return matcher(heard, len(expected))(expected)


def matcher(heard: np.ndarray, width: int) -> Callable[[np.ndarray], float]:
    """:func:`match` for many pieces of ``width`` samples: ``heard``'s
    spectrum and energies are worked out once."""
    # A power of two at least as long as the full correlation: an FFT of an
    # awkward length (a large prime factor) takes seconds, not milliseconds.
    size = 1 << (len(heard) + width).bit_length()
    spectrum = np.fft.rfft(heard, size)
    places = len(heard) - width + 1
    energy = np.cumsum(np.concatenate(([0.0], heard ** 2)))
    window = np.maximum(energy[width:width + places] - energy[:places], 1e-9)

    def score(expected: np.ndarray) -> float:
        assert len(expected) == width
        correlation = np.fft.irfft(spectrum * np.conj(np.fft.rfft(expected, size)), size)
        return float(np.max(correlation[:places] / np.sqrt(window * float(np.sum(expected ** 2)))))

    return score


def heard_prompt(heard: np.ndarray, name: str, language: str = "en") -> float:
    """The median match of the prompt's quarter seconds (a phone's jitter
    buffer may stretch or shrink the audio a little between them)."""
    prompt = np.frombuffer(PromptLibrary().load(language, name).linear, "=i2").astype(float)
    quarter = 8000 // 4
    parts = [prompt[start:start + quarter] for start in range(quarter, len(prompt) - quarter, quarter)]
    score = matcher(heard, quarter)
    return float(np.median([score(part) for part in parts]))
