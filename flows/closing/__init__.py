"""Closing the shop (PIPL Art. 44-47): subjects' requests (subjects), erasure from what is
published (erasure), purging raw data (purge), retention (retention), re-checking (review)."""
