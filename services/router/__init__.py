"""The router: the catalog, the routing policy and the path of every completion to a provider and back."""
