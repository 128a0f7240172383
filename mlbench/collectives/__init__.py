"""Collectives: nccl-tests-style sweeps under torchrun (op table in `plan`, process group in `dist`,
measuring in `probe`, tables in `table`, CLI in `cli`)."""
