"""keyvault: every secret of the suite — gateway API keys as keyed hashes, BYOK provider keys in envelope encryption."""
