"""``python -m stereospike_ros <command>``: the offline tools (see ``cli/__init__.py``)."""

import sys

from stereospike_ros.cli import main

sys.exit(main())
