"""The soebench command line: thin typer commands over the library API."""
