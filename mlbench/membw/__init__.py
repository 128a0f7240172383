"""Memory bandwidth: device copy/read/write/triad, host<->device and GPU<->GPU copies (plans in `plan`, measuring in `probe`, CLI in `cli`)."""
