"""Allocate (and touch) memory until the machine swaps."""

chunks = []
for _ in range(64):
    chunks.append(bytearray(64 * 1024 * 1024))
print(f"ESCAPED: allocated {64 * len(chunks)} MB")
