from safesetting.cli import main

main()
