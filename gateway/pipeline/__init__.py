"""Processing of complete sets: claim, validate, route, acknowledge, archive."""
