"""Register codec: engineering values <-> 16-bit Modbus words (type, scale, word order)."""

from __future__ import annotations

import math
import struct
from typing import Literal, Protocol

RegisterType = Literal["u16", "s16", "u32", "s32", "f32"]
WORDS: dict[str, int] = {"u16": 1, "s16": 1, "u32": 2, "s32": 2, "f32": 2}
RAW_RANGE: dict[str, tuple[float, float]] = {
    "u16": (0, 0xFFFF),
    "s16": (-0x8000, 0x7FFF),
    "u32": (0, 0xFFFFFFFF),
    "s32": (-0x80000000, 0x7FFFFFFF),
    "f32": (-3.4e38, 3.4e38),
}


class WordSpec(Protocol):
    """What the codec needs to know of a register (``profile.RegisterSpec`` is one)."""

    type: str
    scale: float
    word_order: str | None

    @property
    def words(self) -> int: ...



def encode_value(spec: WordSpec, value: float, word_order: str, scale: float | None = None) -> list[int]:
    """Engineering value (in ``spec.unit``) -> list of 16-bit words. Raises ValueError if out of the type's range."""
    factor = spec.scale if scale is None else scale
    raw = value / factor
    if spec.type == "f32":
        words = _float_words(raw)
    else:
        if not math.isfinite(raw):
            raise ValueError(f"value {value!r} is not finite")
        raw_int = int(round(raw))
        lo, hi = RAW_RANGE[spec.type]
        if not lo <= raw_int <= hi:
            raise ValueError(f"raw value {raw_int} out of range {lo}..{hi} for {spec.type}")
        bits = raw_int & (0xFFFF if spec.words == 1 else 0xFFFFFFFF)
        words = [bits] if spec.words == 1 else [(bits >> 16) & 0xFFFF, bits & 0xFFFF]
    if spec.words == 2 and (spec.word_order or word_order) == "little":
        words = list(reversed(words))
    return words


def decode_raw(spec: WordSpec, words: list[int], word_order: str) -> int | float:
    """List of 16-bit words -> raw (unscaled) number."""
    if spec.words == 2 and (spec.word_order or word_order) == "little":
        words = list(reversed(words))
    if spec.type == "f32":
        return struct.unpack(">f", struct.pack(">HH", words[0], words[1]))[0]
    bits = words[0] if spec.words == 1 else (words[0] << 16) | words[1]
    if spec.type == "s16" and bits & 0x8000:
        return bits - 0x10000
    if spec.type == "s32" and bits & 0x80000000:
        return bits - 0x100000000
    return bits


def _float_words(value: float) -> list[int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [hi, lo]
