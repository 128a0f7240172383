"""Train: a reference training step of a synthetic transformer (plans and FLOP count in `plan`, the model
and task in `model`, measuring in `probe`, CLI in `cli`)."""
