from guesser.cli import main

main()
