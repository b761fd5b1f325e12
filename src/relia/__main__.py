from relia.cli import main

main()
