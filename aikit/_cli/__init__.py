"""The commands of `aikit ...` that need more than a few lines (`aikit.cli` is the entry point
and converts errors in one place)."""
