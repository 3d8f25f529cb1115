"""Progress, resource figures and (later) metrics and logs."""
