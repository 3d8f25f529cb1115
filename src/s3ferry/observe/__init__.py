"""Observing a run: Prometheus metrics, scrubbed logs (text or JSON), resource meters (peak RSS, disk
writes), progress listeners."""
