from tollbook.cli import main

main()
