"""Synthetic market data and trades for post_trade.flow, reproducible from the date.

    python3 scripts/trades.py prices DATE INSTRUMENTS.csv FX.csv OUT.csv
    python3 scripts/trades.py trades DATE DESK COUNT INSTRUMENTS.csv OUT.csv

`prices` writes one closing price per instrument (ticker,currency,close,usd_rate);
`trades` writes a desk's executions (trade_id,desk,ticker,side,quantity,price), each
priced near the instrument's reference price. Both seed their random numbers from the
date (and the desk), so a rerun writes the same bytes.
"""

from __future__ import annotations

import csv
import random
import sys
import zlib
from pathlib import Path


def _rng(*key: str) -> random.Random:
    # crc32 rather than hash(): str hashes change between processes.
    return random.Random(zlib.crc32("/".join(key).encode()))


def _instruments(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _write(out: Path, header: list[str], rows: list[list[object]]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def prices(date: str, instruments: Path, fx: Path, out: Path) -> None:
    rng = _rng(date, "close")
    with fx.open(newline="") as f:
        rates = {row["currency"]: row["usd_per_unit"] for row in csv.DictReader(f)}
    rows: list[list[object]] = []
    for inst in _instruments(instruments):
        if inst["currency"] not in rates:
            sys.exit(f"no FX rate for {inst['currency']} ({inst['ticker']})")
        close = float(inst["reference_price"]) * (1 + rng.gauss(0, 0.015))
        rows.append([inst["ticker"], inst["currency"], f"{close:.4f}", rates[inst["currency"]]])
    _write(out, ["ticker", "currency", "close", "usd_rate"], rows)


def trades(date: str, desk: int, count: int, instruments: Path, out: Path) -> None:
    rng = _rng(date, str(desk))
    universe = _instruments(instruments)
    # Each desk trades its own slice of the universe, as desks do.
    book = [inst for n, inst in enumerate(universe) if n % 3 != desk % 3] or universe
    rows: list[list[object]] = []
    for n in range(count):
        inst = rng.choice(book)
        side = rng.choice("BS")
        quantity = rng.randrange(1, 50) * 100
        price = float(inst["reference_price"]) * (1 + rng.gauss(0, 0.01))
        rows.append(
            [f"D{desk}-{n:05d}", f"desk-{desk}", inst["ticker"], side, quantity, f"{price:.4f}"]
        )
    _write(out, ["trade_id", "desk", "ticker", "side", "quantity", "price"], rows)


def main(argv: list[str]) -> None:
    match argv:
        case ["prices", date, instruments, fx, out]:
            prices(date, Path(instruments), Path(fx), Path(out))
        case ["trades", date, desk, count, instruments, out]:
            trades(date, int(desk), int(count), Path(instruments), Path(out))
        case _:
            sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
