"""mlxd benchmarks: every figure beside a baseline measured in the same run, as a ratio.

Run `python -m bench NAME...` or `make bench NAME...`; see bench/README.md.
"""

# Command-line name -> module (one module per sub-benchmark).
BENCHMARKS = {
    "overhead": "overhead",
    "follow-up": "follow_up",
    "peers": "peers",
    "concurrency": "concurrency",
    "typing": "typing_replay",
    "fallback": "fallback",
    "fastpath": "fastpath",
    "prefill": "prefill",
    "quality": "quality",
    "speculation": "speculation",
    "shared": "shared",
    "open-files": "open_files",
}
DEFAULT = ("overhead", "follow-up")
