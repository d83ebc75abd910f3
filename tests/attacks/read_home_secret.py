"""Read a secret file the test put in the user's home."""

try:
    print("ESCAPED:", open("@SECRET_PATH@").read())
except OSError as exc:
    print(f"BLOCKED: {exc}")
