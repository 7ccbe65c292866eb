"""End-to-end pipelines built on the library layers."""
