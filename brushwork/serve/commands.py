"""CLI: ``brushwork serve``."""

from __future__ import annotations

import os
import sys

from brushwork.errors import InvalidParameter


def register(sub) -> None:
    s = sub.add_parser("serve", help="serve the HTTP API (native, A1111, OpenAI) and the web UI")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1); anything but loopback needs --token")
    s.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    s.add_argument("--token", default=None,
                   help="require this token on every request (Bearer, or Basic with any user); "
                        "default $BRUSHWORK_TOKEN, which other local users cannot read from the process list")
    s.add_argument("--max-queue", type=int, default=100, help="most jobs waiting before 429 (default 100)")
    s.add_argument("--cors", nargs="+", default=[], metavar="ORIGIN", help="allow these origins (default: none)")
    s.add_argument("--model", default="default", help="model for requests that name none (default: bundled)")
    s.add_argument("--outputs", default=None, help="output folder (default <brushwork home>/outputs)")
    s.add_argument("--device", default="cpu", help="device for generation (default cpu)")
    s.add_argument("--dtype", default="fp32", help="fp32 (default), bf16 or fp16")
    s.add_argument("--threads", type=int, default=None,
                   help="CPU threads for generation (default: one per core; fewer when other work shares the CPU)")
    s.add_argument("--no-ui", action="store_true", help="do not mount the web UI")
    s.set_defaults(handler=_serve)


def resolve_token(flag: str | None) -> str | None:
    token = flag if flag is not None else os.environ.get("BRUSHWORK_TOKEN")
    if token is not None and not token.strip():
        raise InvalidParameter("--token (or BRUSHWORK_TOKEN) is set but empty", field="token")
    return token


def check_exposure(host: str, token: str | None) -> None:
    """Without a token, only loopback; refuse anything else in one line."""
    from brushwork.serve.auth import is_loopback

    if token is None and not is_loopback(host):
        raise InvalidParameter(
            f"refusing to listen on {host} without a token: pass --token T (or set BRUSHWORK_TOKEN), "
            "or bind to 127.0.0.1", field="host")


def _serve(args) -> int:
    token = resolve_token(args.token)
    check_exposure(args.host, token)
    if not 0 < args.port < 65536:
        raise InvalidParameter(f"--port must be 1-65535, not {args.port}", field="port")
    if args.max_queue < 1:
        raise InvalidParameter(f"--max-queue must be at least 1, not {args.max_queue}", field="max_queue")
    if args.threads is not None and args.threads < 1:
        raise InvalidParameter(f"--threads must be at least 1, not {args.threads}", field="threads")
    for origin in args.cors:
        if origin == "*" or "://" not in origin:
            raise InvalidParameter(f"--cors takes origins like https://example.com, not {origin!r}", field="cors")

    import uvicorn

    from brushwork.paths import brushwork_home
    from brushwork.serve.app import create_app
    from brushwork.serve.service import ServeConfig

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config = ServeConfig(home=brushwork_home(), outputs=args.outputs, token=token, max_queue=args.max_queue,
                         cors=args.cors, model=args.model, device=args.device, dtype=args.dtype, ui=not args.no_ui,
                         threads=args.threads)
    app = create_app(config)
    app.state.service.take_lock()  # a second server on the same home stops here, in one line
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"brushwork serving on http://{shown}:{args.port}  (UI /ui, API docs /docs, outputs {config.outputs})"
          + ("  token required" if token else ""), file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=5)
    return 0
