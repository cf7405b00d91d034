"""Operations: logging set-up, Prometheus metrics, and the health and metrics endpoint."""
