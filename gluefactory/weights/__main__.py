"""Command line of the weights manager.

    python -m gluefactory.weights list
    python -m gluefactory.weights fetch aliked-lightglue [NAME ...] [--all] [--force]
    python -m gluefactory.weights fetch superpoint-open --file ~/Downloads/x.pth
    python -m gluefactory.weights verify [NAME ...]
    python -m gluefactory.weights path NAME

Exit status: 0 on success; 1 when ``verify`` finds a bad or missing file; 2 for a user
error (a fetch that failed, an unknown name, a cache that cannot be written), printed as
one message without a traceback (``GLUEFACTORY_DEBUG=1`` shows it).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .. import settings
from ..utils.cli import debug_enabled, main_wrapper
from . import (
    REGISTRY,
    Session,
    WeightsError,
    WheelSource,
    cache_path,
    copy_into_cache,
    get_spec,
    get_weights_path,
    verify,
)


def _size(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**20:.1f} MiB"


def _state(name: str) -> str:
    path = cache_path(name)
    if not path.exists():
        return "missing"
    check = verify(name)
    if not check.ok:
        return f"BAD ({check.reason})"
    return "verified" if check.verified else "cached (no checksum)"


def cmd_list(args: argparse.Namespace) -> int:
    rows = [("name", "file", "size", "sha256", "licence", "sources", "cache")]
    for spec in REGISTRY.values():
        kinds = "+".join(
            "wheel" if isinstance(s, WheelSource) else s.label.split()[0]
            for s in spec.sources
        )
        rows.append(
            (
                spec.name,
                spec.filename,
                _size(spec.size),
                spec.sha256[:12] if spec.sha256 else "unknown",
                spec.licence,
                kinds,
                _state(spec.name),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
        print("  ".join([*cells, row[-1]]))
    print(f"\ncache: {settings.weights_dir()}")
    print(
        "sha256 'unknown': only a structural check (non-empty, zip CRCs) is possible."
    )
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    names = list(REGISTRY) if args.all else args.names
    if not names:
        args.parser.error("give weight names or --all")
    if args.file is not None:
        if len(names) != 1:
            args.parser.error("--file takes exactly one name")
        spec = get_spec(names[0])
        path = copy_into_cache(spec, Path(args.file), cache_path(names[0]))
        print(f"{names[0]}: {path} ({verify(names[0]).reason})")
        return 0
    failed = []
    with Session(progress=None if not args.quiet else False) as session:
        for name in names:
            try:
                path = get_weights_path(name, session=session, force=args.force)
            except WeightsError as e:
                if debug_enabled():
                    raise
                failed.append(name)
                print(f"error: {name}: {e}", file=sys.stderr)
                continue
            print(f"{name}: {path} ({verify(name).reason})")
    if failed and len(names) > 1:
        print(
            f"{len(failed)} of {len(names)} failed: {', '.join(failed)}",
            file=sys.stderr,
        )
    return 2 if failed else 0


def cmd_verify(args: argparse.Namespace) -> int:
    names = args.names or [n for n in REGISTRY if cache_path(n).exists()]
    if not names:
        print(f"nothing cached in {settings.weights_dir()}")
        return 0
    bad = 0
    for name in names:
        get_spec(name)
        check = verify(name)
        bad += not check.ok
        status = "OK " if check.ok else "BAD"
        print(f"{status} {name}: {cache_path(name)} ({check.reason})")
    return 1 if bad else 0


def cmd_path(args: argparse.Namespace) -> int:
    print(cache_path(args.name))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gluefactory.weights", description="Pretrained-weights manager."
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress or logs"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="registry and cache state")
    p = sub.add_parser("fetch", help="download and verify into the cache")
    p.add_argument("names", nargs="*")
    p.add_argument("--all", action="store_true", help="every registered file")
    p.add_argument("--force", action="store_true", help="download even if cached")
    p.add_argument("--file", help="copy this local file into the cache (after checks)")
    p = sub.add_parser("verify", help="check cached files (all cached ones by default)")
    p.add_argument("names", nargs="*")
    p = sub.add_parser("path", help="print the cache path of a file")
    p.add_argument("name")
    args = parser.parse_args(argv)
    args.parser = parser
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    commands = {
        "list": cmd_list,
        "fetch": cmd_fetch,
        "verify": cmd_verify,
        "path": cmd_path,
    }
    try:
        return main_wrapper(commands[args.command])(args)
    except KeyboardInterrupt:
        print(
            "interrupted (a partial download is kept and resumed next time)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
