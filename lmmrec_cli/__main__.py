"""`python -m lmmrec_cli` runs the same app as the `lmmrec` console script."""

from lmmrec_cli.cli import main

if __name__ == "__main__":
    main()
