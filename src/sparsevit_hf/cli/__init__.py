"""Command-line programs: each parses its arguments, calls the library and reports."""
