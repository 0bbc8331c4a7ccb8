"""The one runtime every tollgate service shares: settings, logging, gRPC server and channels, databases."""

import sys

# httpx loads its command-line client (rich, click, pygments: about 7 MB per process) whenever those are
# installed; no service runs it, and httpx keeps a stub `main` when that module cannot be imported.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
