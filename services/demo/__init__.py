"""``darkstar up --demo``: the simulated site (a Modbus inverter simulator replaying a real home) and its runner.

Nothing in the running stack imports this package; the demo drives the stack, not the reverse.
"""
