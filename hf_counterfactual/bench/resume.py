"""What a benchmark's `resume` may keep: an output folder records the settings it was measured with, and a resumed
run with other settings is refused before it loads anything, so no figure of one run is passed off as another's."""

import json
import os
from pathlib import Path

RECORD = "bench_run.json"


def check_resumable(out: str, settings: dict, resume: bool, earlier_work: bool) -> None:
    """Record `settings` in `out/bench_run.json`. With `resume`, first refuse a folder recorded with other settings,
    or one that holds `earlier_work` but no record (nothing tells what that work was measured with)."""
    settings = json.loads(json.dumps(settings))  # as JSON stores them: tuples become lists
    record = Path(out, RECORD)
    if resume and record.is_file():
        earlier = json.loads(record.read_text())
        if earlier != settings:
            raise ValueError(f"{out} was measured with {earlier}, not {settings}: use another output_dir.")
    elif resume and earlier_work:
        raise ValueError(f"{out} has no {RECORD} to tell what it was measured with: use another output_dir.")
    os.makedirs(out, exist_ok=True)
    record.write_text(json.dumps(settings, indent=1))
