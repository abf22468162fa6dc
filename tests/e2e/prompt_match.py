"""Was this prompt heard? A phone's recording searched for a shipped
prompt by normalised cross-correlation (numpy), so a test tells "you are
number one in the queue" from number two, from music and from silence."""

from __future__ import annotations

import wave
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
    size, width = len(heard) + len(expected), len(expected)
    correlation = np.fft.irfft(np.fft.rfft(heard, size) * np.conj(np.fft.rfft(expected, size)), size)
    places = len(heard) - width + 1
    energy = np.cumsum(np.concatenate(([0.0], heard ** 2)))
    window = energy[width:width + places] - energy[:places]
    scale = np.sqrt(np.maximum(window, 1e-9) * float(np.sum(expected ** 2)))
    return float(np.max(correlation[:places] / scale))


def heard_prompt(heard: np.ndarray, name: str) -> float:
    """The median match of the prompt's quarter seconds (a phone's jitter
    buffer may stretch or shrink the audio a little between them)."""
    prompt = np.frombuffer(PromptLibrary().load("en", name).linear, "=i2").astype(float)
    quarter = 8000 // 4
    parts = [prompt[start:start + quarter] for start in range(quarter, len(prompt) - quarter, quarter)]
    return float(np.median([match(heard, part) for part in parts]))
