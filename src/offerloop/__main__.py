from offerloop.cli import main

main()
