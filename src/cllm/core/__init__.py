"""The pure core: events, partial JSON, the accumulator, finish reasons, response types.

Nothing here does I/O, waits, reads a clock or imports a provider library.
"""
