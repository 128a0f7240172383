"""Fabric acceptance: the network between nodes (views and pair rounds in `plan`, measuring in `probe`,
CLI in `cli`)."""
