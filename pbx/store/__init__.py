"""Lasting PBX state in SQL (SQLite for one node, PostgreSQL for several).

Memory is the working copy; these tables are what survives a restart and
what nodes sharing a database see.  Writes from the asyncio side go through
`BackgroundWriter` so the SIP path never waits on the database::

    engine = make_engine("sqlite:///var/pbx.sqlite3")
    migrate(engine)                                  # at start-up
    bindings = BindingStore(engine)
    cache = bindings.load_active(now)                # at start-up
    writer = BackgroundWriter(engine)
    writer.submit(partial(bindings.upsert, record))  # from the event loop
    writer.close(timeout=5.0)                        # at shutdown
"""

from pbx.store.bindings import BindingRecord, BindingStore
from pbx.store.blocks import BlockStore
from pbx.store.db import DatabaseUrlError, make_engine, migrate
from pbx.store.writer import BackgroundWriter, Op, Together, WriterClosed, WriterStats

__all__ = [
    "BackgroundWriter",
    "BindingRecord",
    "BindingStore",
    "BlockStore",
    "DatabaseUrlError",
    "Op",
    "Together",
    "WriterClosed",
    "WriterStats",
    "make_engine",
    "migrate",
]
