"""The command line: the only place where failures become exit codes."""
