"""health: provider state from active probes and passive outcomes, streamed to routers."""
