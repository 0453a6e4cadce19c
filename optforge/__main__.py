import sys

from optforge.cli import main

sys.exit(main())
