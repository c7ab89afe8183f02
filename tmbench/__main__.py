import sys

from tmbench.cli import main

sys.exit(main())
