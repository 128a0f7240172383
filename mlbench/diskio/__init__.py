"""diskio: O_DIRECT storage IO as ML uses it (plans in `plan`, the IO engine in `engine`, safety rules
in `safety`, measuring in `probe`, running in `run`, CLI in `cli`). Nothing is imported here."""
