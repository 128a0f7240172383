"""Memory bandwidth: device copy/read/write/triad, host<->device and GPU<->GPU copies.

Options, plans and rules in `plan`, measuring in `probe`, the command in `cli`.
"""
