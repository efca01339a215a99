"""Admin surfaces for operators and access managers."""
