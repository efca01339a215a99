"""Operations: settings, structured logging, metrics, lifecycle helpers."""
