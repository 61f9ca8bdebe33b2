from flowbatch.cli import main

main()
