from resnet_cli.cli import main

main()
