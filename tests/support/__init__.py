from pathlib import Path

# The workspace's datasets beside the checkout: tests that use them name them explicitly and
# skip when they are absent (the product's default is the user's data folder).
SHARED_DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
