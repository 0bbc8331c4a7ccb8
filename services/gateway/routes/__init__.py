"""The gateway's HTTP routes, one module per area; each module exports `ROUTES`."""
