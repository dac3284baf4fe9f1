"""Landing: recognise the extracts in a folder, check them, and land them in ``raw.*`` as one batch.

* ``scan``      walks the folder, skips documentation and hidden files, hashes and sniffs each file's bytes;
* ``recognise`` tells which layout a file is (by header and content, never by name) and plans how to read it;
* ``readers``   turns a planned file into one SQL query over DuckDB's own readers (the stacked sheet excepted);
* ``checks``    casts and checks every row in one SQL pass, landing good rows and rejecting the others;
* ``archive``   stores each original by checksum, with a manifest per batch;
* ``ingest``    runs a batch (``ingest``) and rebuilds the raw layer from the archive (``rebuild_from_archive``).
"""
