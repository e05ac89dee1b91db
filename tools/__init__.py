"""Scripts around the app: browser driver, benchmarks, load test, sample generator (not imported by the page)."""
