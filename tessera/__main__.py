"""``python -m tessera`` (also what ``torchrun -m tessera train ...`` runs)."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
