"""The shared weight-generation core: ``bank x_1 context`` for many outputs in one op (see mix.py)."""
from .bind import Slot, WeightWriter, bind, take_parameter
from .generated import GeneratedModel, WeightGenerator
from .mix import mix

__all__ = ["mix", "Slot", "WeightWriter", "bind", "take_parameter", "WeightGenerator", "GeneratedModel"]
