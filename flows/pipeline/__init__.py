"""One export date from the landing to published partitions: the anonymize-exports flow
(anonymize), its passes over the files (passes), the release gate (release), what is recorded
with each partition (record), what a run shares across dates (run), rows set aside (quarantine)."""
