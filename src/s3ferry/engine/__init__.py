"""One file's bytes from a source to a sink: parts planned within the memory budget, read and upload
windows, per-part checksums, retries, throttling, the resume journal and locks, and the checks before
anything is published. Knows backends only through ``core.storage``'s protocols."""
