import sys

from cllm.cli import main

sys.exit(main())
