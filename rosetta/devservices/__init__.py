"""Local services for tests, benchmarks and demos (never used in production paths)."""
