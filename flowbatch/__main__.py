"""`python -m flowbatch`: the same as the `flowbatch` command."""

from flowbatch.cli import main

main()
