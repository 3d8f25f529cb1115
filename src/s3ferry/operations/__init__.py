"""What a user asks for, built on the engine and the backends: one file (``single``), the public Python
API (``copy``), trees, globs, S3-to-S3 copies, unfinished uploads, ``doctor`` checks, and the Dask
executor."""
