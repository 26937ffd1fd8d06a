"""`python -m synthetic_pretraining <command>`: same as the `synthetic-pretraining` console command."""
import sys

from synthetic_pretraining import cli

sys.exit(cli.main())
