"""The cache tables: reading every format, ONE's UUID shape, fast views, merging, indexing.

Pure pandas / pyarrow work on the sessions, datasets and insertions tables (`parquet` reads and
writes their files); no network.  See ``docs/ARCHITECTURE.md`` for what each module does.
"""
