import sys

from engine.jobs.cli import main

sys.exit(main())
