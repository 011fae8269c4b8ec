"""JSON-lines files as the bench scripts write them: one object per line,
other lines (a tool's plain log) skipped. Shared by compare_report.py and
scale_report.py."""
import json
import os


def read(path):
    """Every JSON object of the file at path, in order; [] when it is missing."""
    rows = []
    if os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if line.startswith("{"):
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
    return rows
