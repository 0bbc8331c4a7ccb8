"""The one runtime every tollgate service shares: settings, logging, gRPC server and channels, databases."""
