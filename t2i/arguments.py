"""The command line's argument types and value parsers (:mod:`t2i.cli`): a bad value is a one-line usage error, never
a silent fix."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from .errors import ConfigError


def finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive(text: str) -> int:
    value = non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def png_path(text: str) -> Path:
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; name the file to write, e.g. {path / 'grid.png'}")
    if path.suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"{text} must end in .png")
    return path


def guidance_params(pairs: list[str]) -> dict[str, float]:
    """``["phi=0.5"]`` -> ``{"phi": 0.5}``; a value that is not a finite number is refused in one line."""
    params = {}
    for key, value in parse_overrides(pairs, option="--guidance-param").items():
        try:
            params[key] = finite(str(value))
        except argparse.ArgumentTypeError:
            raise ConfigError(f"--guidance-param {key}={value}: the value must be a finite number") from None
    return params


def parse_overrides(pairs: list[str], option: str = "--set") -> dict:
    """``["epochs=5", "block_out_channels=[32,64]", "sampler=ddim"]`` -> dict. Values are JSON where they parse
    as JSON and plain strings otherwise."""
    parsed = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{option} expects key=value, got {pair!r}")
        try:
            parsed[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[key.strip()] = raw
    return parsed
