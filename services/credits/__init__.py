"""credits: the ledger, the only writer of money (accounts, journal, holds, usage log, billing outbox)."""
