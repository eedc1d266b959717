"""CLI: ``brushwork serve``."""

from __future__ import annotations

import os
import secrets
import sys

from brushwork.errors import InvalidParameter


def register(sub) -> None:
    s = sub.add_parser("serve", help="serve the HTTP API (native, A1111, OpenAI) and the web UI")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1); anything but loopback needs --token")
    s.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    s.add_argument("--token", default=None,
                   help="require this token (at least 16 characters) on every request (Bearer, or Basic with any "
                        "user); 'auto' generates one and prints it once; default $BRUSHWORK_TOKEN, which other "
                        "local users cannot read from the process list")
    s.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="without a token, also serve requests whose Host is NAME (or NAME:PORT), besides "
                        "127.0.0.1, localhost and [::1]; repeatable")
    s.add_argument("--max-queue", type=int, default=100, help="most jobs waiting before 429 (default 100)")
    s.add_argument("--cors", nargs="+", default=[], metavar="ORIGIN",
                   help="allow these origins: CORS headers, and their POST/PUT/PATCH/DELETE requests, which are "
                        "otherwise refused from any origin but the server's own (default: none)")
    s.add_argument("--model", default="default", help="model for requests that name none (default: bundled)")
    s.add_argument("--outputs", default=None, help="output folder (default <brushwork home>/outputs)")
    s.add_argument("--device", default="cpu", help="device for generation (default cpu)")
    s.add_argument("--dtype", default="fp32", help="fp32 (default), bf16 or fp16")
    s.add_argument("--threads", type=int, default=None,
                   help="CPU threads for generation (default: one per core; fewer when other work shares the CPU)")
    s.add_argument("--no-ui", action="store_true", help="do not mount the web UI")
    limits = s.add_argument_group("limits (GET /api/v1/limits shows them)")
    limits.add_argument("--max-prompt-chars", type=int, default=32_000,
                        help="longest prompt and negative prompt, each (default 32000)")
    limits.add_argument("--job-budget", type=float, default=2_000,
                        help="most n × steps × (width × height / 512²) per job (default 2000)")
    limits.add_argument("--max-inline-mb", type=float, default=64,
                        help="most MiB of images (n × width × height × 3) a response may inline as base64 "
                             "(default 64)")
    limits.add_argument("--job-timeout", type=float, default=600,
                        help="seconds a job may run before it is failed and its worker restarted (default 600)")
    limits.add_argument("--keep-days", type=float, default=None,
                        help="delete finished jobs and the images they wrote after this many days (default: keep)")
    limits.add_argument("--max-outputs-gb", type=float, default=None,
                        help="delete the oldest finished jobs' images beyond this many GB (default: no limit)")
    limits.add_argument("--max-models", type=int, default=1,
                        help="models held in memory besides --model; the least recently used goes first (default 1)")
    s.set_defaults(handler=_serve)


AUTO_TOKEN = "auto"


def resolve_token(flag: str | None) -> str | None:
    """The token from ``--token`` or ``$BRUSHWORK_TOKEN``: ``auto`` makes a fresh one, and a token
    shorter than 16 characters is refused in one line."""
    from brushwork.serve.auth import check_token

    token = flag if flag is not None else os.environ.get("BRUSHWORK_TOKEN")
    if token == AUTO_TOKEN:
        return secrets.token_urlsafe(24)  # 32 characters, 192 bits
    check_token(token)
    return token


def check_exposure(host: str, token: str | None) -> None:
    """Without a token, only loopback; refuse anything else in one line."""
    from brushwork.serve.auth import is_loopback

    if token is None and not is_loopback(host):
        raise InvalidParameter(
            f"refusing to listen on {host} without a token: pass --token T (or set BRUSHWORK_TOKEN), "
            "or bind to 127.0.0.1", field="host")


def _serve(args) -> int:
    from brushwork.serve.auth import parse_allow_hosts

    token = resolve_token(args.token)
    generated = (args.token if args.token is not None else os.environ.get("BRUSHWORK_TOKEN")) == AUTO_TOKEN
    parse_allow_hosts(args.allow_host)
    check_exposure(args.host, token)
    if not 0 < args.port < 65536:
        raise InvalidParameter(f"--port must be 1-65535, not {args.port}", field="port")
    if args.max_queue < 1:
        raise InvalidParameter(f"--max-queue must be at least 1, not {args.max_queue}", field="max_queue")
    if args.threads is not None and args.threads < 1:
        raise InvalidParameter(f"--threads must be at least 1, not {args.threads}", field="threads")
    for flag in ("max_prompt_chars", "job_budget", "max_inline_mb", "job_timeout", "max_models", "keep_days",
                 "max_outputs_gb"):
        if getattr(args, flag) is not None and not getattr(args, flag) > 0:
            raise InvalidParameter(f"--{flag.replace('_', '-')} must be positive, not {getattr(args, flag)}",
                                   field=flag)
    for origin in args.cors:
        if origin == "*" or "://" not in origin:
            raise InvalidParameter(f"--cors takes origins like https://example.com, not {origin!r}", field="cors")

    import uvicorn

    from brushwork.paths import brushwork_home
    from brushwork.serve.app import create_app
    from brushwork.serve.limits import Limits
    from brushwork.serve.service import ServeConfig

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config = ServeConfig(home=brushwork_home(), outputs=args.outputs, token=token, max_queue=args.max_queue,
                         cors=args.cors, model=args.model, device=args.device, dtype=args.dtype, ui=not args.no_ui,
                         threads=args.threads, allow_hosts=args.allow_host, max_models=args.max_models,
                         keep_days=args.keep_days, max_outputs_gb=args.max_outputs_gb,
                         limits=Limits(prompt_chars=args.max_prompt_chars, job_budget=args.job_budget,
                                       inline_bytes=int(args.max_inline_mb * 2**20), job_timeout=args.job_timeout))
    app = create_app(config)
    app.state.service.take_lock()  # a second server on the same home stops here, in one line
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"brushwork serving on http://{shown}:{args.port}  (UI /ui, API docs /docs, outputs {config.outputs})"
          + ("  token required" if token else ""), file=sys.stderr, flush=True)
    if generated:
        print(f"token (generated for this run): {token}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=5)
    return 0
