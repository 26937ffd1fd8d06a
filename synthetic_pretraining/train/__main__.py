"""`python -m synthetic_pretraining.train --gin_file=… --gin.KEY=VALUE` (see train/main.py)."""
from synthetic_pretraining.train import main

main.console_main()
