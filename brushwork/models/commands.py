"""``brushwork models …``: inspect, add, list, show, remove and convert model files.

Handlers import torch/diffusers only when they run. Every user-caused failure is a
``BrushworkError``: one line on stderr and exit 2, or ``{"error": …}`` on stdout with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys

from brushwork.errors import BrushworkError


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help="inspect, register and convert model files",
                              description="The local model hub: formats, hashes and licences, decided by content.")
    sub = p.add_subparsers(dest="models_command", metavar="ACTION", parser_class=type(p))
    p.set_defaults(handler=lambda args: _usage(p))

    def action(name: str, help: str, fn):
        a = sub.add_parser(name, help=help, description=help)
        a.add_argument("--json", action="store_true", help="print JSON (errors as {\"error\": …})")
        a.set_defaults(handler=_guard(fn))
        return a

    a = action("inspect", "describe a model file or folder from its content", _inspect)
    a.add_argument("path", help="a model file (any name) or a diffusers folder")
    a.add_argument("--hash", action="store_true", help="also compute sha256 and the A1111 short hash")
    a.add_argument("--allow-pickle", action="store_true", help="read pickles with torch.load(weights_only=True)")

    a = action("add", "register a model in the local hub", _add)
    a.add_argument("path")
    a.add_argument("--name", help="registry name (default: from the file name)")
    a.add_argument("--license", help="licence identifier, e.g. creativeml-openrail-m, openrail++, apache-2.0, "
                   "cc-by-nc-4.0, other (default: the model card's, else unknown)")
    how = a.add_mutually_exclusive_group()
    how.add_argument("--copy", action="store_const", dest="storage", const="copy",
                     help="copy it into the model home")
    how.add_argument("--link", action="store_const", dest="storage", const="link",
                     help="hard-link it into the model home (same filesystem)")
    a.add_argument("--allow-pickle", action="store_true", help="accept a pickle (read with weights_only=True)")
    a.add_argument("--replace", action="store_true", help="replace an entry of the same name")
    a.add_argument("--no-hash", action="store_true", help="skip hashing (large files on slow disks)")

    action("list", "list registered models", _list)

    a = action("show", "show one registered model and its licence terms", _show)
    a.add_argument("name")

    a = action("remove", "forget a registered model", _remove)
    a.add_argument("name")
    a.add_argument("--delete-files", action="store_true",
                   help="also delete its copy in the model home (never an in-place original)")

    a = action("convert", "convert a pickled checkpoint to safetensors", _convert)
    a.add_argument("path")
    a.add_argument("--to", choices=["safetensors"], required=True)
    a.add_argument("-o", "--output", help="output file (default: next to the input)")
    a.add_argument("--allow-pickle", action="store_true",
                   help="required: read the pickle with torch.load(weights_only=True)")
    a.add_argument("--force", action="store_true", help="overwrite an existing output")


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 2


def _guard(fn):
    def run(args) -> int:
        try:
            return int(fn(args) or 0)
        except BrushworkError as exc:
            if getattr(args, "json", False):
                print(json.dumps({"error": str(exc)}))
                return exc.exit_code
            raise

    return run


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _inspect(args) -> int:
    from brushwork.models.inspect import inspect_model

    _print_json(inspect_model(args.path, hash=args.hash, allow_pickle=args.allow_pickle))
    return 0


def _add(args) -> int:
    from brushwork.models.registry import Registry

    with Registry() as reg:
        e = reg.add(args.path, name=args.name, license=args.license, storage=args.storage or "in-place",
                    allow_pickle=args.allow_pickle, replace=args.replace, hash=not args.no_hash)
    if args.json:
        _print_json(e.as_dict())
    else:
        print(f"added {e.name}: {e.kind} ({e.base or '-'}), {e.short_hash or 'no hash'}, licence {e.license}, "
              f"{e.storage} at {e.path}")
    return 0


def _list(args) -> int:
    from brushwork.models.formats import human_size
    from brushwork.models.registry import Registry

    with Registry() as reg:
        entries = reg.list()
    if args.json:
        _print_json([e.as_dict() for e in entries])
        return 0
    rows = [("NAME", "KIND", "BASE", "SIZE", "HASH", "LICENSE")]
    rows += [(e.name, e.kind, e.base or "-", human_size(e.size), e.short_hash or "-", e.license) for e in entries]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if len(rows) == 1:
        print("(no models yet: 'brushwork models add PATH')")
    return 0


def _show(args) -> int:
    from brushwork.errors import NotFound
    from brushwork.models.formats import human_size
    from brushwork.models.licenses import describe, get_license
    from brushwork.models.registry import Registry, check_name

    with Registry() as reg:
        e = reg.get(check_name(args.name))
    if e is None:
        raise NotFound(f"no model named {args.name!r} (see 'brushwork models list')")
    if args.json:
        _print_json({**e.as_dict(), "license_terms": get_license(e.license).as_dict()})
        return 0
    arch = e.architecture
    print(f"name:        {e.name}")
    print(f"kind:        {e.kind} (base {e.base or '-'})")
    print(f"format:      {e.format}")
    print(f"size:        {human_size(e.size)} ({e.size} bytes)")
    print(f"sha256:      {e.sha256 or '-'}")
    print(f"short hash:  {e.short_hash or '-'}")
    print(f"stored:      {e.storage} at {e.path}")
    if e.base_model:
        print(f"base model:  {e.base_model}")
    if e.tags:
        print(f"tags:        {', '.join(e.tags)}")
    if arch.get("parameters"):
        print(f"parameters:  {arch['parameters']:,} ({arch.get('dtype')})")
    if arch.get("cross_attention_dim"):
        print(f"cross-attn:  {arch['cross_attention_dim']}")
    print(f"licence ({e.license_source}):")
    print(describe(e.license))
    return 0


def _remove(args) -> int:
    from brushwork.models.registry import Registry

    with Registry() as reg:
        e = reg.remove(args.name, delete_files=args.delete_files)
    if args.json:
        _print_json({"removed": e.name})
    else:
        print(f"removed {e.name}")
    return 0


def _convert(args) -> int:
    from brushwork.models.convert import convert_to_safetensors

    result = convert_to_safetensors(args.path, out=args.output, allow_pickle=args.allow_pickle, force=args.force)
    if args.json:
        _print_json(result)
    else:
        print(f"wrote {result['output']} ({result['tensors']} tensors, sha256 {result['sha256'][:10]})")
    return 0
