"""python3 -m fuzz TARGET [--seconds N]: atheris over one target, its corpus grown in place."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"


def main() -> int:
    from fuzz.targets import TARGETS

    parser = argparse.ArgumentParser(prog="python3 -m fuzz")
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--corpus", type=Path, help="default: fuzz/corpus/TARGET")
    args, rest = parser.parse_known_args()
    try:
        import atheris
    except ImportError:
        print("python3 -m fuzz needs atheris: pip install -e .[fuzz]", file=sys.stderr)
        return 2
    corpus = args.corpus or CORPUS / args.target
    corpus.mkdir(parents=True, exist_ok=True)
    target = TARGETS[args.target]
    argv = [sys.argv[0], str(corpus), f"-max_total_time={args.seconds}",
            f"-artifact_prefix={Path(__file__).resolve().parent}/crash-{args.target}-",
            "-print_final_stats=1", *rest]
    atheris.instrument_all()
    atheris.Setup(argv, target)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
