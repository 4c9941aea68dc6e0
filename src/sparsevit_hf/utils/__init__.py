"""Small helpers every part of the package may import (they import nothing from it)."""

from .paths import is_local_path
from .seeding import derive_seed

__all__ = ["derive_seed", "is_local_path"]
