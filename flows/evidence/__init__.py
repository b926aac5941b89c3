"""What the compliance officer shows: the facts (facts) and the evidence pack with the PIA draft
(report)."""
