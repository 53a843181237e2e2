import sys
from pathlib import Path

# tests/servers.py and tests/apps are imported by tests and by server subprocesses.
sys.path.insert(0, str(Path(__file__).resolve().parent))
