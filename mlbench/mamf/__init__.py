"""MAMF: maximum achievable matmul FLOPS (plans in `plan`, measuring in `probe`, CLI in `cli`)."""
