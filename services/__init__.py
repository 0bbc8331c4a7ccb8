"""tollgate's services: gateway, router, credits, keyvault and health, plus their shared runtime."""
