"""``python -m tinynet PAPER [flags]``: see ``tinynet.cli``."""
from tinynet.cli import main

if __name__ == "__main__":
    main()
