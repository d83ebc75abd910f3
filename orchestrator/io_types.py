"""The types of value that flow between steps: what a card takes and makes, what a plan passes."""

from __future__ import annotations

from typing import Literal

__all__ = ["IO_TYPES", "IOType"]

IOType = Literal["text", "audio", "image", "json"]
IO_TYPES: tuple[str, ...] = ("text", "audio", "image", "json")
