"""``rfconv-deploy info``: package versions and which backends this machine has."""

from __future__ import annotations

import argparse
import json


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("info", help="print package versions and which backends are available")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    return p


def run(args: argparse.Namespace) -> int:
    from exporter.backends.availability import probe, versions

    found = versions()
    available = probe()
    if args.json:
        print(json.dumps({
            "versions": found,
            "backends": {b.name: {"available": b.available, "detail": b.detail} for b in available},
        }, indent=2))
        return 0
    print("Packages")
    for name, version in found.items():
        print(f"  {name:<18} {version or 'not installed'}")
    print("\nBackends")
    for b in available:
        print(f"  {b.name:<18} {'yes' if b.available else 'no ':<4} {b.detail}")
    return 0
