"""Run as a script: write ledger records through LedgerWriter under load, forever.

Prints each record's id once its ``await write()`` returned (that is, once it is committed),
so that a test can SIGKILL this process at any moment and check that every printed id is in
the ledger.  Usage: ``python ledger_child.py LEDGER_PATH [LEDGER_URL]`` (with a URL, the
ledger is that PostgreSQL database and LEDGER_PATH's journal is kept locally).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from ledger_records import T0, local_record

from hybrid.ledger.writer import LedgerWriter


async def write_forever(path: Path, url: str | None = None) -> None:
    writer = LedgerWriter(path, retention_days=0, url=url, retry_s=(0.05,))
    writer.start()

    async def one(number: int) -> None:
        await writer.write(local_record(id=f"r{number}", time=T0 + number))
        print(f"r{number}", flush=True)

    number = 0
    while True:
        # Twenty requests in flight at a time, finishing in whatever order they commit.
        await asyncio.gather(*(one(number + k) for k in range(20)))
        number += 20


if __name__ == "__main__":
    asyncio.run(write_forever(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None))
