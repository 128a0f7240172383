"""diskio: O_DIRECT storage IO as ML uses it (options and plans in `plan`, the IO engine in `engine`, safety
rules in `safety`, measuring in `probe`, the probe's definition and workspace in `cli`). Nothing is imported here."""
