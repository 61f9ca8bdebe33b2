"""Small greyscale images (binary PGM) for render.flow, with nothing beyond the stdlib.

    python3 scripts/render.py frame  INDEX COUNT WIDTH HEIGHT OUT.pgm
    python3 scripts/render.py thumb  IN.pgm FACTOR OUT.pgm
    python3 scripts/render.py sheet  COLUMNS OUT.pgm IN.pgm...

A frame is a diagonal gradient with a bright disc that moves across it as INDEX goes
from 0 to COUNT-1, so neighbouring frames differ and a wrong index shows.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path


def write_pgm(path: Path, width: int, height: int, pixels: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(f"P5\n{width} {height}\n255\n".encode() + pixels)


def read_pgm(path: Path) -> tuple[int, int, bytes]:
    data = path.read_bytes()
    magic, size, maxval, pixels = data.split(b"\n", 3)
    if magic != b"P5" or maxval != b"255":
        sys.exit(f"{path}: not an 8-bit binary PGM")
    width, height = (int(v) for v in size.split())
    return width, height, pixels[: width * height]


def frame(index: int, count: int, width: int, height: int, out: Path) -> None:
    t = index / max(count - 1, 1)
    cx, cy = t * (width - 1), height / 2 + math.sin(t * math.pi * 2) * height / 4
    radius = min(width, height) / 6
    pixels = bytearray()
    for y in range(height):
        for x in range(width):
            value = int(200 * (x + y) / (width + height))
            if (x - cx) ** 2 + (y - cy) ** 2 <= radius**2:
                value = 255
            pixels.append(value)
    write_pgm(out, width, height, bytes(pixels))


def thumb(src: Path, factor: int, out: Path) -> None:
    # A box filter: each thumbnail pixel is the mean of a factor x factor block.
    width, height, pixels = read_pgm(src)
    tw, th = width // factor, height // factor
    small = bytearray()
    for ty in range(th):
        for tx in range(tw):
            block = [
                pixels[(ty * factor + dy) * width + tx * factor + dx]
                for dy in range(factor)
                for dx in range(factor)
            ]
            small.append(sum(block) // len(block))
    write_pgm(out, tw, th, bytes(small))


def sheet(columns: int, out: Path, sources: list[Path]) -> None:
    images = [read_pgm(p) for p in sorted(sources)]
    if not images:
        sys.exit("no thumbnails given")
    width, height = images[0][0], images[0][1]
    rows = math.ceil(len(images) / columns)
    canvas = bytearray(width * columns * height * rows)
    for n, (w, h, pixels) in enumerate(images):
        if (w, h) != (width, height):
            sys.exit("thumbnails differ in size")
        ox, oy = (n % columns) * width, (n // columns) * height
        for y in range(height):
            start = (oy + y) * width * columns + ox
            canvas[start : start + width] = pixels[y * width : (y + 1) * width]
    write_pgm(out, width * columns, height * rows, bytes(canvas))


def main(argv: list[str]) -> None:
    match argv:
        case ["frame", index, count, width, height, out]:
            frame(int(index), int(count), int(width), int(height), Path(out))
        case ["thumb", src, factor, out]:
            thumb(Path(src), int(factor), Path(out))
        case ["sheet", columns, out, *sources]:
            sheet(int(columns), Path(out), [Path(s) for s in sources])
        case _:
            sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
