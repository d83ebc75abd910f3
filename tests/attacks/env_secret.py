"""Read an environment secret of the parent process."""

import os

value = os.environ.get("@SECRET_ENV@")
print("ESCAPED: " + value if value else "BLOCKED: not in the environment")
