"""What every tuomin process shares: default paths, Prefect settings, the Shanghai calendar, log
masking, progress reporting, and the failure points tests use."""
