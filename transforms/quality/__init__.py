"""Quality gates (Great Expectations) for each stage."""
