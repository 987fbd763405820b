"""The layers' shared argument check."""

import numbers


def positive_int(name, value):
    """`value` as an `int`; `ValueError` naming `name` unless it is an integer >= 1 (a NumPy
    integer too, as Keras's own layers take; not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, received {value!r}")
    return int(value)
