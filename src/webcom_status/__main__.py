from webcom_status.cli import main

main()
