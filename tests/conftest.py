"""Tests run in float64 where they can: x64 is switched on here, and dtypes are always passed explicitly."""

import jax

jax.config.update("jax_enable_x64", True)
