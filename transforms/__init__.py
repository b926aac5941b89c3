"""Pure, vectorized column transforms and the privacy engine: no I/O, no Prefect, no GX.

policy      the reviewed YAML policy as typed models
operators   the transforms a policy names (keep, drop, pseudonymize, generalize, redact)
steps       conform -> parse -> link -> erase -> anonymize, table in, table out
anonymity   the lattice search that chooses generalization levels and suppression
metrics     k and risk figures recomputed from published values
"""
