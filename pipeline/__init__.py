"""Orchestration: config, stage cache, CLI (`skylink`), executors and the report."""
