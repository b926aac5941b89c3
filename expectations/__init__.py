"""Great Expectations suites that gate publication. Importing this package registers tuomin's
custom expectations with GX (GX silently drops unknown expectation types from a suite)."""

from expectations import partition, release  # noqa: F401  (registers the custom expectations)
