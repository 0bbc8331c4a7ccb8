"""Provider adapters: one interface, two ways of calling an upstream (direct OpenAI-compatible HTTP, litellm)."""
