"""The executor's Modbus backend: profile schema (YAML register maps), the profiles' expression
language, the register codec and the transport (:class:`transport.ModbusInverter`)."""
