"""Where data lives and how it is reached: the landing area (landing), the warehouse (warehouse,
query, tables), the ledger (ledger), the two keys (keys), encrypted backups (backup), and the file hashes the
ledger records (files)."""
