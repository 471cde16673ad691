"""The steps of scripts/install that need Python: `python3 -m appliance.bundle STEP …`.

Runs with the box's own python3 from the bundle's appliance wheel (zipimport) once scripts/verify-bundle
has checked it, so everything but `catalogue` (run with the new environment's Python, for tomli_w) is
standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tomllib
from pathlib import Path

from appliance.bundle.manifest import (
    CATALOGUE,
    MANIFEST_NAME,
    MODELS,
    BundleError,
    Manifest,
    compatibility_problem,
    hash_stream,
    human_size,
    this_machine,
    this_python,
)
from appliance.bundle.verify import read_head, verify_bundle


def _check_space(manifest: Manifest, opt_staging: Path, models_staging: Path) -> None:
    """Refuse before unpacking when a disk cannot take it (venvs take about twice their wheels)."""
    models = sum(e.size for name, e in manifest.files.items() if name.startswith(MODELS + "/"))
    needs = {opt_staging: (manifest.total_bytes - models) * 3, models_staging: models}
    if os.stat(opt_staging).st_dev == os.stat(models_staging).st_dev:
        needs = {opt_staging: sum(needs.values())}
    for where, need in needs.items():
        stat = os.statvfs(where)
        free = stat.f_bavail * stat.f_frsize
        if need > free:
            raise BundleError(f"not enough space on the disk of {where}: the install needs about "
                              f"{human_size(need)}, {human_size(free)} are free")


def unpack(args: argparse.Namespace) -> None:
    bundle, opt, models = Path(args.bundle), Path(args.opt_staging), Path(args.models_staging)
    head = read_head(bundle)
    manifest, raw = head.manifest, head.raw
    _check_space(manifest, opt, models)

    def destination(name: str) -> Path:
        if name.startswith(MODELS + "/"):
            return models / name.removeprefix(MODELS + "/")
        return opt / name

    def compatible(m: Manifest) -> str | None:
        return compatibility_problem(m, args.target, this_python(), this_machine())

    def progress(line: str) -> None:
        print(f"  {line}", file=sys.stderr)

    verify_bundle(bundle, None, destination, compatible, progress if args.verbose else None,
                  manifest_sha256=args.manifest_sha256)
    (opt / MANIFEST_NAME).write_bytes(raw)
    print(f"{manifest.appliance_version}-{hashlib.sha256(raw).hexdigest()[:12]}")


def _manifest(staging: str) -> Manifest:
    return Manifest.from_json((Path(staging) / MANIFEST_NAME).read_bytes())


def plan(args: argparse.Namespace) -> None:
    """One line each: `venv NAME WHEELS REQ,… REMOVE,…`, `model DIR SLUG`, `absent DIR SLUG`, `partial WHAT`."""
    manifest = _manifest(args.staging)
    for name, venv in manifest.venvs.items():
        print("venv", name, venv.wheels, ",".join(venv.requirements), ",".join(venv.remove) or "-")
    for model in manifest.models:
        print("model" if model.included else "absent", model.directory, model.slug)
    for what in manifest.left_out:
        print("partial", what)


def model_matches(args: argparse.Namespace) -> None:
    """Exit 0 when DIR holds exactly the bundle's files of model NAME (a re-install keeps it)."""
    manifest, directory = _manifest(args.staging), Path(args.directory)
    prefix = f"{MODELS}/{args.name}/"
    expected = {n.removeprefix(prefix): e for n, e in manifest.files.items() if n.startswith(prefix)}
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    if present != set(expected):
        sys.exit(1)
    for name, entry in expected.items():
        with (directory / name).open("rb") as stream:
            if hash_stream(stream) != (entry.sha256, entry.size):
                sys.exit(1)


def catalogue(args: argparse.Namespace) -> None:
    """The bundle's catalogue with each model's path under MODELS_DIR, written atomically to OUT."""
    import tomli_w

    data = tomllib.loads((Path(args.staging) / CATALOGUE).read_text())
    for table in data.get("model", []):
        if "path" in table:
            table["path"] = str(Path(args.models_dir) / table["path"])
    out = Path(args.out)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text("# Written by scripts/install from the bundle; edit freely, a later install keeps it.\n"
                       + tomli_w.dumps(data))
    partial.replace(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m appliance.bundle", description=__doc__)
    steps = parser.add_subparsers(dest="step", required=True)
    step = steps.add_parser("unpack", help="verify the bundle and unpack it into staging dirs")
    step.add_argument("bundle")
    step.add_argument("--opt-staging", required=True)
    step.add_argument("--models-staging", required=True)
    step.add_argument("--target", required=True, choices=["cpu", "cuda"])
    step.add_argument("--manifest-sha256", required=True,
                      help="the sha256 of the manifest scripts/verify-bundle checked the signature of")
    step.add_argument("--verbose", action="store_true")
    step.set_defaults(run=unpack)
    step = steps.add_parser("plan")
    step.add_argument("staging")
    step.set_defaults(run=plan)
    step = steps.add_parser("model-matches")
    step.add_argument("staging")
    step.add_argument("name")
    step.add_argument("directory")
    step.set_defaults(run=model_matches)
    step = steps.add_parser("catalogue")
    step.add_argument("staging")
    step.add_argument("out")
    step.add_argument("models_dir")
    step.set_defaults(run=catalogue)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:  # a full disk while unpacking, a permission
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
