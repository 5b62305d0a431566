"""Mega models registered with fairseq (importing a module registers its model and architectures)."""
from . import mega_lm  # noqa: F401
from . import mega_lra  # noqa: F401
from . import mega_encoder  # noqa: F401
from . import mega_translation  # noqa: F401
