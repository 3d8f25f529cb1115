"""The vocabulary every layer speaks, with no I/O: locations, options (each declared once, in
``optionspec``), the Source/Sink/ChunkWriter protocols and the ``Features`` record, errors and exit codes,
checksums, verification verdicts, what counts as a secret."""
