"""A new export: profile its columns and propose policy entries (propose, `tuomin classify`)."""
