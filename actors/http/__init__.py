"""The scheduler's HTTP endpoints (``actors.http.server``): Prometheus metrics today, the
dashboard later, served from the scheduler's own event loop."""
