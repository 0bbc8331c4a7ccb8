"""The gateway: tollgate's only public surface, OpenAI's HTTP API over the internal gRPC services."""
