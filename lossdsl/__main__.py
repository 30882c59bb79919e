from lossdsl.cli import main

main()
