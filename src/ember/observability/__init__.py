"""What happened: invocation logs, invocation records with statistics, Prometheus metrics."""
